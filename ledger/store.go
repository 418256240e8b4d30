package ledger

// The storage boundary: every SQL statement of the ledger, and the
// translation of the database's refusals into the package's errors.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shopspring/decimal"
)

// querier is what reads need: the pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// errKeyTaken: the transfer was not inserted because its idempotency key is
// held by a transaction that committed meanwhile.
var errKeyTaken = errors.New("idempotency key taken")

// constraintError is the domain error that a violation of the named
// constraint means (see migrations/0003_ledger.up.sql), or nil.
func constraintError(name string) error {
	switch name {
	case "account_balances_no_overdraft":
		return ErrInsufficientFunds
	case "transfers_reversal_of_key":
		return ErrAlreadyReversed
	case "transfers_idempotency_key_key":
		return ErrIdempotencyConflict
	case "transfers_distinct_accounts":
		return ErrSameAccount
	case "transfers_amount_positive", "ledger_entries_direction_matches_sign":
		return ErrInvalidAmount
	case "transfers_from_account_fkey", "transfers_to_account_fkey":
		// The accounts exist (their rows are locked): the currency differs.
		return ErrCurrencyMismatch
	case "ledger_entries_account_fkey":
		return ErrAccountNotFound
	case "accounts_name_length", "accounts_currency_code":
		return ErrInvalidInput
	}
	return nil
}

const sqlStateNumericOutOfRange = "22003"

// translate turns a refusal by a constraint into the domain error it means.
// Other errors, deadlocks and serialization failures among them (withRetry
// looks for those), pass unchanged.
func translate(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	if domain := constraintError(pgErr.ConstraintName); domain != nil {
		return fmt.Errorf("%s: %w", pgErr.Message, domain)
	}
	if pgErr.Code == sqlStateNumericOutOfRange {
		return fmt.Errorf("%s: %w", pgErr.Message, ErrInvalidAmount)
	}
	// Class 22 (data exception: a NUL in text, an invalid escape in JSON...)
	// is the request's fault, never a transient failure worth a retry.
	if strings.HasPrefix(pgErr.Code, "22") {
		return fmt.Errorf("%s: %w", pgErr.Message, ErrInvalidInput)
	}
	return err
}

// insertAccountTx inserts an account and its zero balance at version.
func insertAccountTx(ctx context.Context, tx pgx.Tx, id uuid.UUID, p CreateAccountParams, version int64) (Account, error) {
	a := Account{ID: id, Name: p.Name, Currency: p.Currency, AllowNegative: p.AllowNegative, APIKeyID: p.APIKeyID, Version: version}
	batch := &pgx.Batch{}
	batch.Queue(`INSERT INTO accounts (id, name, currency, allow_negative, api_key_id) VALUES ($1, $2, $3, $4, nullif($5, ''))
		RETURNING created_at`,
		id, p.Name, p.Currency, p.AllowNegative, p.APIKeyID).QueryRow(func(row pgx.Row) error { return row.Scan(&a.CreatedAt) })
	batch.Queue(`INSERT INTO account_balances (account_id, currency, allow_negative, version) VALUES ($1, $2, $3, $4)
		RETURNING balance`, id, p.Currency, p.AllowNegative, version).QueryRow(func(row pgx.Row) error { return row.Scan(&a.Balance) })
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return Account{}, fmt.Errorf("insert account: %w", translate(err))
	}
	return a, nil
}

func getAccount(ctx context.Context, q querier, id uuid.UUID) (Account, error) {
	var a Account
	err := q.QueryRow(ctx, `SELECT a.id, a.name, a.currency, a.allow_negative, coalesce(a.api_key_id, ''), b.balance, b.version, a.created_at
		FROM accounts a JOIN account_balances b ON b.account_id = a.id WHERE a.id = $1`, id).
		Scan(&a.ID, &a.Name, &a.Currency, &a.AllowNegative, &a.APIKeyID, &a.Balance, &a.Version, &a.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, fmt.Errorf("account %s: %w", id, ErrAccountNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("get account %s: %w", id, err)
	}
	return a, nil
}

// lockedBalance is an account_balances row, locked for the transaction.
type lockedBalance struct {
	AccountID     uuid.UUID
	Currency      string
	AllowNegative bool
	Balance       decimal.Decimal
	Version       int64
}

type lockParams struct {
	accounts   []uuid.UUID
	key        string
	reversalOf uuid.UUID // uuid.Nil unless the transfer is a reversal
}

type lockResult struct {
	// balances holds the locked rows of the accounts that exist.
	balances map[uuid.UUID]lockedBalance
	// holder is the transfer already holding the key, if any.
	holder *storedTransfer
	// reversedBy is the transfer that already reverses p.reversalOf, if any.
	reversedBy uuid.UUID
}

// lockAccountsTx locks the balance rows of p.accounts in ascending id order
// and then, in the same round trip and so after the locks are held, looks up
// the idempotency key and whether p.reversalOf is reversed already.
func lockAccountsTx(ctx context.Context, tx pgx.Tx, p lockParams) (lockResult, error) {
	res := lockResult{balances: make(map[uuid.UUID]lockedBalance, len(p.accounts))}
	batch := &pgx.Batch{}
	// The sort sits below the row locking in the plan, so rows are locked in
	// this order; every transfer takes its two locks in one global order.
	batch.Queue(`SELECT account_id, currency, allow_negative, balance, version FROM account_balances
		WHERE account_id = ANY($1) ORDER BY account_id FOR UPDATE`, p.accounts).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var b lockedBalance
			if err := rows.Scan(&b.AccountID, &b.Currency, &b.AllowNegative, &b.Balance, &b.Version); err != nil {
				return err
			}
			res.balances[b.AccountID] = b
		}
		return rows.Err()
	})
	batch.Queue(`SELECT `+transferColumns+` FROM transfers WHERE idempotency_key = $1`, p.key).QueryRow(func(row pgx.Row) error {
		stored, err := scanTransfer(row)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		res.holder = &stored
		return nil
	})
	if p.reversalOf != uuid.Nil {
		batch.Queue(`SELECT id FROM transfers WHERE reversal_of = $1`, p.reversalOf).QueryRow(func(row pgx.Row) error {
			err := row.Scan(&res.reversedBy)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return err
		})
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return lockResult{}, fmt.Errorf("lock accounts: %w", err)
	}
	return res, nil
}

// writtenPosting is what the database returned for one side of a transfer.
type writtenPosting struct {
	entryID uuid.UUID
	amount  decimal.Decimal
	balance decimal.Decimal
	version int64
}

type writtenTransfer struct {
	createdAt time.Time
	postings  map[uuid.UUID]writtenPosting // by account
}

// writeTransferTx inserts the transfer and its entries and moves both
// balances, in one statement. When another transaction committed the same
// idempotency key first, it writes nothing and returns errKeyTaken.
func writeTransferTx(ctx context.Context, tx pgx.Tx, p transferPlan) (writtenTransfer, error) {
	var reversalOf *uuid.UUID
	if p.req.reversalOf != uuid.Nil {
		reversalOf = &p.req.reversalOf
	}
	sides := []posting{p.debit, p.credit}
	entryIDs, accounts, amounts, directions := make([]uuid.UUID, 2), make([]uuid.UUID, 2), make([]string, 2), make([]string, 2)
	for i, s := range sides {
		entryIDs[i], accounts[i], amounts[i], directions[i] = s.entryID, s.accountID, formatAmount(s.amount), string(s.direction)
	}
	// Entries and balances are written only if the transfer row was: the
	// other CTEs read the first one's RETURNING.
	rows, err := tx.Query(ctx, `WITH transfer AS (
			INSERT INTO transfers (id, idempotency_key, request_hash, from_account_id, to_account_id, amount, currency, reversal_of, metadata, api_key_id)
			VALUES ($1, $2, $3, $4, $5, $6::numeric, $7, $8, $9::jsonb, nullif($14, ''))
			ON CONFLICT (idempotency_key) DO NOTHING
			RETURNING id, created_at
		), entry AS (
			INSERT INTO ledger_entries (id, transaction_id, account_id, amount, direction)
			SELECT e.id, transfer.id, e.account_id, e.amount, e.direction
			FROM transfer, unnest($10::uuid[], $11::uuid[], $12::numeric[], $13::text[]) AS e (id, account_id, amount, direction)
			RETURNING id, account_id, amount
		), balance AS (
			UPDATE account_balances AS b
			SET balance = b.balance + entry.amount, version = b.version + 1, updated_at = now()
			FROM entry WHERE b.account_id = entry.account_id
			RETURNING b.account_id, b.balance, b.version
		)
		SELECT transfer.created_at, entry.id, entry.account_id, entry.amount, balance.balance, balance.version
		FROM transfer, entry JOIN balance ON balance.account_id = entry.account_id`,
		p.id, p.req.key, p.req.hash, p.req.from, p.req.to, formatAmount(p.req.amount), p.currency, reversalOf, string(p.req.metadata),
		entryIDs, accounts, amounts, directions, p.req.apiKeyID)
	if err != nil {
		return writtenTransfer{}, fmt.Errorf("write transfer: %w", translate(err))
	}
	w := writtenTransfer{postings: make(map[uuid.UUID]writtenPosting, 2)}
	var accountID uuid.UUID
	var wp writtenPosting
	_, err = pgx.ForEachRow(rows, []any{&w.createdAt, &wp.entryID, &accountID, &wp.amount, &wp.balance, &wp.version}, func() error {
		w.postings[accountID] = wp
		return nil
	})
	if err != nil {
		return writtenTransfer{}, fmt.Errorf("write transfer: %w", translate(err))
	}
	if len(w.postings) == 0 {
		return writtenTransfer{}, fmt.Errorf("write transfer with key %q: %w", p.req.key, errKeyTaken)
	}
	return w, nil
}

// storedTransfer is a transfer row with the hash of the request that made it.
type storedTransfer struct {
	Transfer
	requestHash string
}

const transferColumns = `id, idempotency_key, request_hash, from_account_id, to_account_id, amount, currency, status,
	reversal_of, metadata, coalesce(api_key_id, ''), created_at`

func scanTransfer(row pgx.Row) (storedTransfer, error) {
	var t storedTransfer
	var reversalOf uuid.NullUUID
	err := row.Scan(&t.ID, &t.IdempotencyKey, &t.requestHash, &t.FromAccountID, &t.ToAccountID, &t.Amount, &t.Currency,
		&t.Status, &reversalOf, &t.Metadata, &t.APIKeyID, &t.CreatedAt)
	t.ReversalOf = reversalOf.UUID
	return t, err
}

func getTransfer(ctx context.Context, q querier, id uuid.UUID) (storedTransfer, error) {
	t, err := scanTransfer(q.QueryRow(ctx, `SELECT `+transferColumns+` FROM transfers WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return storedTransfer{}, fmt.Errorf("transfer %s: %w", id, ErrTransferNotFound)
	}
	if err != nil {
		return storedTransfer{}, fmt.Errorf("get transfer %s: %w", id, err)
	}
	return t, nil
}

func transferByKey(ctx context.Context, q querier, key string) (storedTransfer, error) {
	t, err := scanTransfer(q.QueryRow(ctx, `SELECT `+transferColumns+` FROM transfers WHERE idempotency_key = $1`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return storedTransfer{}, fmt.Errorf("transfer with key %q: %w", key, ErrTransferNotFound)
	}
	if err != nil {
		return storedTransfer{}, fmt.Errorf("get transfer by key: %w", err)
	}
	return t, nil
}

// listEntries returns up to p.Limit+1 entries of an account after p.After.
// The running balance is summed over all the account's entries in id order
// before the page is cut, so it is right on every page; the cost grows with
// the entries before the page.
func listEntries(ctx context.Context, q querier, accountID uuid.UUID, p EntriesParams) ([]Entry, error) {
	rows, err := q.Query(ctx, `SELECT id, transaction_id, account_id, amount, direction, running_balance, created_at
		FROM (
			SELECT id, transaction_id, account_id, amount, direction, created_at,
				sum(amount) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running_balance
			FROM ledger_entries WHERE account_id = $1
		) AS e
		WHERE id > $2 ORDER BY id LIMIT $3`, accountID, p.After, p.Limit+1)
	if err != nil {
		return nil, fmt.Errorf("list entries of %s: %w", accountID, err)
	}
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Entry, error) {
		var e Entry
		var direction string
		err := row.Scan(&e.ID, &e.TransactionID, &e.AccountID, &e.Amount, &direction, &e.RunningBalance, &e.CreatedAt)
		e.Direction = Direction(direction)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list entries of %s: %w", accountID, err)
	}
	return entries, nil
}
