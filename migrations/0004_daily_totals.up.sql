-- An asynchronous projection: per account and UTC day, the money that left
-- and arrived. It is fed by ledger.transfer_completed events as the outbox
-- relay publishes them on daybook.log, so it lags the ledger by the relay.
CREATE TABLE account_daily_totals (
    account_id uuid          NOT NULL,
    day        date          NOT NULL,
    debited    numeric(20,4) NOT NULL DEFAULT 0 CHECK (debited >= 0),
    credited   numeric(20,4) NOT NULL DEFAULT 0 CHECK (credited >= 0),
    postings   bigint        NOT NULL DEFAULT 0 CHECK (postings >= 0),
    PRIMARY KEY (account_id, day)
);

-- Events each asynchronous projection has applied, so that a redelivered
-- message is applied once. Positions commit out of order, so a single
-- "last position" could skip an event; the checkpoint table keeps the
-- highest position applied, for lag, not for deduplication.
CREATE TABLE projection_applied (
    projection text NOT NULL,
    event_id   uuid NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, event_id)
);

CREATE TABLE projection_checkpoints (
    projection text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
