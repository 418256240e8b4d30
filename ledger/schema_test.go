package ledger_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/ledger"
)

// These tests go around the service, straight to SQL: the database must hold
// the ledger's invariants on its own.

func TestSchema_RefusesChangingEntriesAndTransfers(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world := openAccount(t, svc, "world", true)
	alice := openAccount(t, svc, "alice", false)
	tr := move(t, svc, world.ID, alice.ID, "10")
	ctx := t.Context()

	tests := []struct {
		name string
		sql  string
	}{
		{name: "update entry", sql: `UPDATE ledger_entries SET created_at = now() WHERE transaction_id = $1`},
		{name: "delete entry", sql: `DELETE FROM ledger_entries WHERE transaction_id = $1`},
		{name: "update transfer", sql: `UPDATE transfers SET metadata = '{"x":1}' WHERE id = $1`},
		{name: "delete transfer", sql: `DELETE FROM transfers WHERE id = $1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pool.Exec(ctx, tt.sql, tr.ID)
			requirePgCode(t, err, "42501")
		})
	}
	for _, table := range []string{"ledger_entries", "transfers"} {
		_, err := pool.Exec(ctx, `TRUNCATE `+table+` CASCADE`)
		requirePgCode(t, err, "42501")
	}
	require.Equal(t, 2, countRows(t, pool, "ledger_entries"))
	require.Equal(t, 1, countRows(t, pool, "transfers"))
}

func TestSchema_RefusesOverdraftOfAccountThatMayNotGoNegative(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world, alice := fundedAccount(t, svc, "10")
	ctx := t.Context()

	_, err := pool.Exec(ctx, `UPDATE account_balances SET balance = -0.0001 WHERE account_id = $1`, alice.ID)
	requireViolation(t, err, "23514", "account_balances_no_overdraft")

	_, err = pool.Exec(ctx, `UPDATE account_balances SET balance = balance - 1000 WHERE account_id = $1`, world.ID)
	require.NoError(t, err, "an account that allows a negative balance may go below zero")

	// The copy of allow_negative cannot be changed to dodge the check.
	_, err = pool.Exec(ctx, `UPDATE account_balances SET allow_negative = true WHERE account_id = $1`, alice.ID)
	requireViolation(t, err, "23503", "account_balances_account_fkey")
	require.Equal(t, "10.0000", balanceOf(t, svc, alice.ID))
}

func TestSchema_RefusesCommitOfUnbalancedTransaction(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world := openAccount(t, svc, "world", true)
	alice := openAccount(t, svc, "alice", false)
	ctx := t.Context()

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	transferID := uuid.Must(uuid.NewV7())
	_, err = tx.Exec(ctx, `INSERT INTO transfers (id, idempotency_key, request_hash, from_account_id, to_account_id, amount, currency)
		VALUES ($1, 'raw', repeat('0', 64), $2, $3, 10, 'USD')`, transferID, world.ID, alice.ID)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO ledger_entries (id, transaction_id, account_id, amount, direction) VALUES
		($1, $3, $4, -10, 'debit'), ($2, $3, $5, 9.9999, 'credit')`,
		uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7()), transferID, world.ID, alice.ID)
	require.NoError(t, err, "the check waits for the commit")

	err = tx.Commit(ctx)
	message := requireViolation(t, err, "23514", "ledger_entries_balanced")
	require.Contains(t, message, "does not balance: its entries sum to -0.0001")
	require.Zero(t, countRows(t, pool, "ledger_entries"))
	require.Zero(t, countRows(t, pool, "transfers"))
}

func TestSchema_RefusesEntryWhoseDirectionContradictsItsSign(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world := openAccount(t, svc, "world", true)
	tr := move(t, svc, world.ID, openAccount(t, svc, "alice", false).ID, "1")

	_, err := pool.Exec(t.Context(), `INSERT INTO ledger_entries (id, transaction_id, account_id, amount, direction)
		VALUES ($1, $2, $3, 5, 'debit')`, uuid.Must(uuid.NewV7()), tr.ID, world.ID)
	requireViolation(t, err, "23514", "ledger_entries_direction_matches_sign")
}

func TestSchema_RefusesTransferWhoseCurrencyIsNotTheAccounts(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world := openAccount(t, svc, "world", true)
	alice := openAccount(t, svc, "alice", false)

	_, err := pool.Exec(t.Context(), `INSERT INTO transfers (id, idempotency_key, request_hash, from_account_id, to_account_id, amount, currency)
		VALUES ($1, 'raw', repeat('0', 64), $2, $3, 10, 'EUR')`, uuid.Must(uuid.NewV7()), world.ID, alice.ID)
	requireViolation(t, err, "23503", "transfers_from_account_fkey")
}
