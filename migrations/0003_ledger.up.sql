-- The ledger: accounts, their balance projection, transfers and the
-- double-entry ledger entries they write. Money is numeric(20,4), never float.

CREATE TABLE accounts (
    id             uuid        PRIMARY KEY,
    name           text        NOT NULL CONSTRAINT accounts_name_length CHECK (length(name) BETWEEN 1 AND 200),
    currency       char(3)     NOT NULL CONSTRAINT accounts_currency_code CHECK (currency ~ '^[A-Z]{3}$'),
    allow_negative boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Targets of the composite foreign keys below: they let the database hold
    -- that a transfer's currency is its accounts' currency, and that the
    -- copies in account_balances agree with the account.
    CONSTRAINT accounts_id_currency_key UNIQUE (id, currency),
    CONSTRAINT accounts_id_currency_allow_negative_key UNIQUE (id, currency, allow_negative)
);

-- The balance projection, kept in the transaction of every transfer. version
-- moves with the account's event stream (account-<id>): one per event.
-- currency and allow_negative are copies of the account's, so that the
-- overdraft CHECK needs no join; the foreign key keeps them equal (and, with
-- NO ACTION, refuses changing them on accounts while a balance row exists).
CREATE TABLE account_balances (
    account_id     uuid          PRIMARY KEY,
    currency       char(3)       NOT NULL,
    allow_negative boolean       NOT NULL,
    balance        numeric(20,4) NOT NULL DEFAULT 0,
    version        bigint        NOT NULL DEFAULT 0 CONSTRAINT account_balances_version_not_negative CHECK (version >= 0),
    updated_at     timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT account_balances_account_fkey FOREIGN KEY (account_id, currency, allow_negative)
        REFERENCES accounts (id, currency, allow_negative),
    -- The database itself refuses an overdraft.
    CONSTRAINT account_balances_no_overdraft CHECK (allow_negative OR balance >= 0)
);

-- One row per completed transfer, keyed by the client's idempotency key.
-- request_hash is the SHA-256 of the canonical request, to tell a retry (same
-- key, same body) from a conflict (same key, different body).
CREATE TABLE transfers (
    id              uuid          PRIMARY KEY,
    idempotency_key text          NOT NULL
                    CONSTRAINT transfers_idempotency_key_length CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash    text          NOT NULL CONSTRAINT transfers_request_hash_sha256 CHECK (request_hash ~ '^[0-9a-f]{64}$'),
    from_account_id uuid          NOT NULL,
    to_account_id   uuid          NOT NULL,
    amount          numeric(20,4) NOT NULL CONSTRAINT transfers_amount_positive CHECK (amount > 0),
    currency        char(3)       NOT NULL,
    status          text          NOT NULL DEFAULT 'COMPLETED' CONSTRAINT transfers_status CHECK (status IN ('COMPLETED')),
    -- A transfer is reversed at most once.
    reversal_of     uuid          CONSTRAINT transfers_reversal_of_fkey REFERENCES transfers (id),
    metadata        jsonb         NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT transfers_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT transfers_reversal_of_key UNIQUE (reversal_of),
    CONSTRAINT transfers_distinct_accounts CHECK (from_account_id <> to_account_id),
    CONSTRAINT transfers_not_own_reversal CHECK (reversal_of <> id),
    CONSTRAINT transfers_from_account_fkey FOREIGN KEY (from_account_id, currency) REFERENCES accounts (id, currency),
    CONSTRAINT transfers_to_account_fkey FOREIGN KEY (to_account_id, currency) REFERENCES accounts (id, currency)
);

-- Double entry: each transfer writes one debit (negative) and one credit
-- (positive); an account's balance is the sum of its entries.
CREATE TABLE ledger_entries (
    id             uuid          PRIMARY KEY,
    transaction_id uuid          NOT NULL CONSTRAINT ledger_entries_transaction_fkey REFERENCES transfers (id),
    account_id     uuid          NOT NULL CONSTRAINT ledger_entries_account_fkey REFERENCES accounts (id),
    amount         numeric(20,4) NOT NULL,
    direction      text          NOT NULL CONSTRAINT ledger_entries_direction CHECK (direction IN ('debit', 'credit')),
    created_at     timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT ledger_entries_direction_matches_sign CHECK (
        (direction = 'debit' AND amount < 0) OR (direction = 'credit' AND amount > 0)
    )
);

-- Ids are UUIDv7, written while the account's balance row is locked, so
-- (account_id, id) serves keyset pages in posting order.
CREATE INDEX ledger_entries_account_id_id ON ledger_entries (account_id, id);
-- The balance check below reads one transaction's entries.
CREATE INDEX ledger_entries_transaction_id ON ledger_entries (transaction_id);

-- Entries and transfers are the book of original entry: corrections are new
-- transfers (reversals), never edits.
CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION daybook_refuse_change();

CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION daybook_refuse_change();

CREATE TRIGGER transfers_append_only
    BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION daybook_refuse_change();

CREATE TRIGGER transfers_no_truncate
    BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION daybook_refuse_change();

-- Every transaction's entries sum to zero. Checked at commit (the trigger is
-- deferred), because the entries of one transaction arrive one row at a time.
CREATE FUNCTION ledger_entries_check_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
BEGIN
    SELECT sum(amount) INTO total FROM ledger_entries WHERE transaction_id = NEW.transaction_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: its entries sum to %', NEW.transaction_id, total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_balanced';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_check_balanced();
