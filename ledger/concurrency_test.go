package ledger_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/logevent"
)

// concurrentPoolConns sizes the pools of the concurrency tests: more than
// testdb's 10, so that transfers really overlap, while two such tests at
// once (go test -parallel defaults to the number of CPUs) stay well under
// the server's 100 connections.
const concurrentPoolConns = 20

// TestTransfer_Concurrency is one suite that both lock strategies must pass.
// Under the redis strategy, a call refused with ErrLockBusy is retried by
// the test client, as an HTTP client retries after 409 + Retry-After.
func TestTransfer_Concurrency(t *testing.T) {
	t.Parallel()
	suite := []struct {
		name string
		run  func(t *testing.T, lock string)
	}{
		{name: "50FullBalanceDebitsOneSucceeds", run: func(t *testing.T, lock string) { testFullBalanceDebits(t, lock, 50) }},
		{name: "1000FullBalanceDebitsOneSucceeds", run: func(t *testing.T, lock string) { testFullBalanceDebits(t, lock, 1000) }},
		{name: "OppositeTransfersAllSucceedWithoutDeadlock", run: testOppositeTransfers},
		{name: "100RetriesOfOneKeyMakeOneTransfer", run: testConcurrentRetriesOfOneKey},
		{name: "OneKeyTwoBodiesOneWinsOtherConflicts", run: testConcurrentKeyConflict},
	}
	for _, lock := range lockStrategies {
		t.Run(lock, func(t *testing.T) {
			t.Parallel()
			for _, tt := range suite {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					tt.run(t, lock)
				})
			}
		})
	}
}

// concurrentLedger returns services on one schema whose pool has
// concurrentPoolConns connections: one service under the postgres strategy,
// and under the redis strategy two on one Redis key space, as two processes
// would be, so that callers also meet in Redis and not only in one
// service's local queue.
//
// Every suite test ends by checking that no transaction was retried: the
// lock order, not the retry, is what keeps transfers free of deadlocks.
func concurrentLedger(t *testing.T, lock string) ([]*ledger.Service, *pgxpool.Pool) {
	t.Helper()
	var retries atomic.Int64
	t.Cleanup(func() {
		require.Zero(t, retries.Load(), "transactions retried after a deadlock or serialization failure")
	})
	_, schemaURL := testdb.NewWithURL(t)
	config, err := pgxpool.ParseConfig(schemaURL)
	require.NoError(t, err)
	config.MaxConns = concurrentPoolConns
	pool, err := pgxpool.NewWithConfig(t.Context(), config)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	cfg := ledger.Config{Lock: lock, OnRetry: func(string) { retries.Add(1) }}
	if lock == ledger.LockPostgres {
		return []*ledger.Service{newLedgerOn(t, pool, cfg)}, pool
	}
	cfg.Redis, cfg.KeyPrefix = testredis.New(t)
	return []*ledger.Service{newLedgerOn(t, pool, cfg), newLedgerOn(t, pool, cfg)}, pool
}

// outcome is what one concurrent call got.
type outcome struct {
	transfer ledger.Transfer
	created  bool
	err      error
}

// runConcurrently starts one goroutine per params, spread over the
// services, releases them together, and returns their outcomes in order and
// how often ErrLockBusy was retried.
func runConcurrently(t *testing.T, services []*ledger.Service, params []ledger.TransferParams) ([]outcome, int64) {
	t.Helper()
	ctx := t.Context()
	out := make([]outcome, len(params))
	var busy atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, p := range params {
		wg.Go(func() {
			<-start
			tr, created, err := transferAsClient(ctx, services[i%len(services)], p, &busy)
			out[i] = outcome{tr, created, err}
		})
	}
	close(start)
	wg.Wait()
	return out, busy.Load()
}

func testFullBalanceDebits(t *testing.T, lock string, callers int) {
	services, pool := concurrentLedger(t, lock)
	svc := services[0]
	_, alice := fundedAccount(t, svc, "100")
	bob := openAccount(t, svc, "bob", false)
	params := make([]ledger.TransferParams, callers)
	for i := range params {
		params[i] = ledger.TransferParams{From: alice.ID, To: bob.ID, Amount: mustAmount(t, "100"), IdempotencyKey: newKey()}
	}

	outcomes, busy := runConcurrently(t, services, params)

	var succeeded, refused int
	for _, o := range outcomes {
		switch {
		case o.err == nil:
			require.True(t, o.created)
			succeeded++
		case errors.Is(o.err, ledger.ErrInsufficientFunds):
			refused++
		default:
			require.NoError(t, o.err)
		}
	}
	t.Logf("%s: %d callers, %d ErrLockBusy retries", lock, callers, busy)
	require.Equal(t, 1, succeeded)
	require.Equal(t, callers-1, refused)
	require.Equal(t, "0.0000", balanceOf(t, svc, alice.ID))
	require.Equal(t, "100.0000", balanceOf(t, svc, bob.ID))
	require.Equal(t, 2, countRows(t, pool, "transfers"))
	require.Equal(t, 4, countRows(t, pool, "ledger_entries"))
	if lock == ledger.LockPostgres {
		require.Zero(t, busy)
	}
}

func testOppositeTransfers(t *testing.T, lock string) {
	services, pool := concurrentLedger(t, lock)
	svc := services[0]
	world := openAccount(t, svc, "world", true)
	a := openAccount(t, svc, "a", false)
	b := openAccount(t, svc, "b", false)
	move(t, svc, world.ID, a.ID, "1000")
	move(t, svc, world.ID, b.ID, "1000")
	const each = 500
	var params []ledger.TransferParams
	for range each {
		params = append(params,
			ledger.TransferParams{From: a.ID, To: b.ID, Amount: mustAmount(t, "1"), IdempotencyKey: newKey()},
			ledger.TransferParams{From: b.ID, To: a.ID, Amount: mustAmount(t, "0.5"), IdempotencyKey: newKey()})
	}

	outcomes, busy := runConcurrently(t, services, params)

	for i, o := range outcomes {
		require.NoError(t, o.err, "transfer %d", i)
		require.True(t, o.created)
	}
	t.Logf("%s: %d ErrLockBusy retries", lock, busy)
	// a: 1000 - 500×1 + 500×0.5; b: 1000 + 500×1 - 500×0.5.
	require.Equal(t, "750.0000", balanceOf(t, svc, a.ID))
	require.Equal(t, "1250.0000", balanceOf(t, svc, b.ID))
	require.Equal(t, 2+2*each, countRows(t, pool, "transfers"))
	for _, id := range []uuid.UUID{a.ID, b.ID} {
		account, err := svc.GetAccount(t.Context(), id)
		require.NoError(t, err)
		// Opened, funded, then one version per transfer.
		require.EqualValues(t, 2+2*each, account.Version)
		streamVersion, err := eventstore.StreamVersion(t.Context(), pool, logevent.AccountStream(id))
		require.NoError(t, err)
		require.Equal(t, account.Version, streamVersion)
	}
}

func testConcurrentRetriesOfOneKey(t *testing.T, lock string) {
	services, pool := concurrentLedger(t, lock)
	svc := services[0]
	_, alice := fundedAccount(t, svc, "100")
	bob := openAccount(t, svc, "bob", false)
	// The whole balance: a retry that ran the transfer again would find the
	// money gone instead of returning the original.
	p := ledger.TransferParams{From: alice.ID, To: bob.ID, Amount: mustAmount(t, "100"), IdempotencyKey: "one-key", Metadata: map[string]any{"order": "o-1"}}
	params := make([]ledger.TransferParams, 100)
	for i := range params {
		params[i] = p
	}

	outcomes, busy := runConcurrently(t, services, params)

	created := 0
	for _, o := range outcomes {
		require.NoError(t, o.err)
		require.Equal(t, outcomes[0].transfer.ID, o.transfer.ID)
		require.Equal(t, "one-key", o.transfer.IdempotencyKey)
		if o.created {
			created++
		}
	}
	t.Logf("%s: %d ErrLockBusy retries", lock, busy)
	require.Equal(t, 1, created)
	var withKey int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM transfers WHERE idempotency_key = 'one-key'`).Scan(&withKey))
	require.Equal(t, 1, withKey)
	require.Equal(t, 2, countRows(t, pool, "transfers"))
	require.Equal(t, "0.0000", balanceOf(t, svc, alice.ID))
	require.Equal(t, "100.0000", balanceOf(t, svc, bob.ID))
}

// Two requests under one key over disjoint accounts share no row lock: the
// UNIQUE key decides, and the loser's callers learn of the conflict.
func testConcurrentKeyConflict(t *testing.T, lock string) {
	services, pool := concurrentLedger(t, lock)
	svc := services[0]
	world, alice := fundedAccount(t, svc, "100")
	carol := openAccount(t, svc, "carol", false)
	move(t, svc, world.ID, carol.ID, "100")
	bob := openAccount(t, svc, "bob", false)
	dave := openAccount(t, svc, "dave", false)
	bodies := []ledger.TransferParams{
		{From: alice.ID, To: bob.ID, Amount: mustAmount(t, "10"), IdempotencyKey: "shared"},
		{From: carol.ID, To: dave.ID, Amount: mustAmount(t, "20"), IdempotencyKey: "shared"},
	}
	var params []ledger.TransferParams
	for range 25 {
		params = append(params, bodies...)
	}

	outcomes, _ := runConcurrently(t, services, params)

	stored, err := pool.Query(t.Context(), `SELECT id FROM transfers WHERE idempotency_key = 'shared'`)
	require.NoError(t, err)
	var ids []uuid.UUID
	for stored.Next() {
		var id uuid.UUID
		require.NoError(t, stored.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, stored.Err())
	require.Len(t, ids, 1)
	winner := outcomes[0]
	if winner.err != nil {
		winner = outcomes[1]
	}
	require.NoError(t, winner.err)
	winning := 0
	if winner.transfer.FromAccountID == carol.ID {
		winning = 1
	}
	created := 0
	for i, o := range outcomes {
		if i%2 != winning {
			require.ErrorIs(t, o.err, ledger.ErrIdempotencyConflict, "call %d", i)
			continue
		}
		require.NoError(t, o.err, "call %d", i)
		require.Equal(t, ids[0], o.transfer.ID)
		if o.created {
			created++
		}
	}
	require.Equal(t, 1, created)
	balances := []string{balanceOf(t, svc, bob.ID), balanceOf(t, svc, dave.ID)}
	require.Equal(t, [][]string{{"10.0000", "0.0000"}, {"0.0000", "20.0000"}}[winning], balances)
}
