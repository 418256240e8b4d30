package ledger_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/ledger"
)

// lockStrategies are the values of Config.Lock that every concurrency test
// runs under.
var lockStrategies = []string{ledger.LockPostgres, ledger.LockRedis}

// newLedger returns a service on a schema of its own.
func newLedger(t testing.TB, lock string) (*ledger.Service, *pgxpool.Pool) {
	t.Helper()
	pool := testdb.New(t)
	return newLedgerOn(t, pool, ledger.Config{Lock: lock}), pool
}

// newLedgerOn returns a service on pool; a redis strategy without a client
// gets one with a key prefix of its own.
func newLedgerOn(t testing.TB, pool *pgxpool.Pool, cfg ledger.Config) *ledger.Service {
	t.Helper()
	if cfg.Lock == ledger.LockRedis && cfg.Redis == nil {
		cfg.Redis, cfg.KeyPrefix = testredis.New(t)
	}
	svc, err := ledger.NewService(pool, cfg)
	require.NoError(t, err)
	return svc
}

// openAccount opens a USD account.
func openAccount(t testing.TB, svc *ledger.Service, name string, allowNegative bool) ledger.Account {
	t.Helper()
	a, err := svc.CreateAccount(t.Context(), ledger.CreateAccountParams{Name: name, AllowNegative: allowNegative})
	require.NoError(t, err)
	return a
}

// fundedAccount opens a world account and an account funded from it.
func fundedAccount(t testing.TB, svc *ledger.Service, funds string) (world, account ledger.Account) {
	t.Helper()
	world = openAccount(t, svc, "world", true)
	account = openAccount(t, svc, "funded", false)
	move(t, svc, world.ID, account.ID, funds)
	return world, account
}

// move transfers amount under a fresh key and requires it to succeed.
func move(t testing.TB, svc *ledger.Service, from, to uuid.UUID, amount string) ledger.Transfer {
	t.Helper()
	tr, created, err := svc.Transfer(t.Context(), ledger.TransferParams{
		From: from, To: to, Amount: mustAmount(t, amount), IdempotencyKey: newKey(),
	})
	require.NoError(t, err)
	require.True(t, created)
	return tr
}

func mustAmount(t testing.TB, s string) decimal.Decimal {
	t.Helper()
	d, err := ledger.ParseAmount(s)
	require.NoError(t, err)
	return d
}

func newKey() string { return uuid.NewString() }

// balanceOf is an account's balance as numeric(20,4) prints it.
func balanceOf(t testing.TB, svc *ledger.Service, id uuid.UUID) string {
	t.Helper()
	a, err := svc.GetAccount(t.Context(), id)
	require.NoError(t, err)
	return a.Balance.StringFixed(4)
}

func countRows(t testing.TB, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, table string) int {
	t.Helper()
	var n int
	require.NoError(t, q.QueryRow(t.Context(), `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&n))
	return n
}

// rowCounts counts every table a transfer writes to.
func rowCounts(t testing.TB, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range []string{"transfers", "ledger_entries", "event_log", "outbox"} {
		out[table] = countRows(t, pool, table)
	}
	return out
}

func requirePgCode(t testing.TB, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "want a Postgres error with SQLSTATE %s, got %v", code, err)
	require.Equal(t, code, pgErr.Code, pgErr.Message)
}

// requireViolation requires err to be a violation of the named constraint
// and returns its message.
func requireViolation(t testing.TB, err error, code, constraint string) string {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "want a violation of %s, got %v", constraint, err)
	require.Equal(t, code, pgErr.Code, pgErr.Message)
	require.Equal(t, constraint, pgErr.ConstraintName, pgErr.Message)
	return pgErr.Message
}

// busyRetriesMax bounds how often a test client retries one call refused
// with ErrLockBusy.
const busyRetriesMax = 10_000

// transferAsClient calls Transfer the way an HTTP client treats 409 +
// Retry-After: on ErrLockBusy it waits a moment and tries again. busy
// counts those retries.
func transferAsClient(ctx context.Context, svc *ledger.Service, p ledger.TransferParams, busy *atomic.Int64) (ledger.Transfer, bool, error) {
	for range busyRetriesMax {
		tr, created, err := svc.Transfer(ctx, p)
		if !errors.Is(err, ledger.ErrLockBusy) {
			return tr, created, err
		}
		busy.Add(1)
		time.Sleep(10*time.Millisecond + rand.N(40*time.Millisecond))
	}
	return ledger.Transfer{}, false, errors.New("still busy after every retry")
}
