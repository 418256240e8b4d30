package projections_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/logevent"
	"github.com/daybook/daybook/projections"
)

// ordersFixture fills the log and the orders projection through the real
// ingest processor: o-1 is placed, shipped, then a late, older "paid" update
// arrives and loses; o-2 is placed; one event of another source is no order.
// It returns the pool and how many log events it wrote.
func ordersFixture(t *testing.T) (*pgxpool.Pool, int64) {
	t.Helper()
	pool := testdb.New(t)
	fs, err := archive.NewFileStore(t.TempDir())
	require.NoError(t, err)
	proc, err := ingest.NewProcessor(pool, ingest.NewStore(pool), fs, ingest.ProcessorConfig{MaxAttempts: 3})
	require.NoError(t, err)
	events := []ingest.Event{
		orderEvent(t, "o-1", "placed", base),
		orderEvent(t, "o-1", "shipped", base.Add(2*time.Hour)),
		orderEvent(t, "o-1", "paid", base.Add(time.Hour)),               // late and older: loses
		orderEvent(t, "o-2", "placed", base.Add(time.Minute+123456789)), // nanoseconds: Postgres keeps microseconds
		ingestEvent(t, "clicks", `{"page":"/"}`),
	}
	for _, e := range events {
		outcome, err := proc.Process(t.Context(), e)
		require.NoError(t, err)
		require.Equal(t, ingest.OutcomeCompleted, outcome)
	}
	o := getOrder(t, pool, "o-1")
	require.Equal(t, "shipped", o.Status, "the writer kept the newest update")
	return pool, int64(len(events))
}

func ingestEvent(t *testing.T, source, payload string) ingest.Event {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return ingest.Event{
		ID: id, IdempotencyKey: "key-" + id.String(), Source: source, Type: "test.happened",
		Payload: json.RawMessage(payload), ReceivedAt: time.Now().UTC().Truncate(time.Microsecond),
	}
}

func orderEvent(t *testing.T, orderID, status string, occurredAt time.Time) ingest.Event {
	t.Helper()
	e := ingestEvent(t, logevent.SourceOrderUpdates, `{"status":"`+status+`"}`)
	e.Type = "order.updated"
	e.OrderID = orderID
	at := occurredAt.UTC()
	e.OccurredAt = &at
	return e
}

// table returns every row of a projection as text, in key order, leaving out
// updated_at (a rebuild stamps the rows it corrects).
func table(t *testing.T, pool *pgxpool.Pool, name string) [][]string {
	t.Helper()
	query := map[string]string{
		"orders": `SELECT order_id, status, occurred_at::text, last_event_id::text FROM orders ORDER BY 1`,
		"account_balances": `SELECT account_id::text, currency::text, allow_negative::text, balance::text, version::text
			FROM account_balances ORDER BY 1`,
	}[name]
	rows, err := pool.Query(t.Context(), query)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([]string, error) {
		vals, err := row.Values()
		strs := make([]string, len(vals))
		for i, v := range vals {
			strs[i] = fmt.Sprint(v)
		}
		return strs, err
	})
	require.NoError(t, err)
	return out
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	tag, err := pool.Exec(t.Context(), sql, args...)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected(), sql)
}

func TestRebuildOrders_RepairsAPlantedStatus(t *testing.T) {
	t.Parallel()
	pool, events := ordersFixture(t)
	written := table(t, pool, "orders")
	require.Len(t, written, 2)
	exec(t, pool, `UPDATE orders SET status = 'bogus' WHERE order_id = 'o-1'`)

	report, err := projections.RebuildOrders(t.Context(), pool, nil)
	require.NoError(t, err)
	require.Equal(t, projections.RebuildReport{Name: "orders", EventsRead: events, Rows: 2, Changed: 1}, report)
	require.Equal(t, written, table(t, pool, "orders"), "the rebuild equals what the writer produced")
	require.Equal(t, "shipped", getOrder(t, pool, "o-1").Status)
}

func TestRebuildOrders_RestoresAMissingAndDeletesAnExtraOrder(t *testing.T) {
	t.Parallel()
	pool, events := ordersFixture(t)
	written := table(t, pool, "orders")
	exec(t, pool, `DELETE FROM orders WHERE order_id = 'o-2'`)
	exec(t, pool, `INSERT INTO orders (order_id, status, occurred_at, last_event_id) VALUES ('o-ghost', 'placed', now(), $1)`, uuid.New())

	report, err := projections.Rebuild(t.Context(), pool, "orders", nil)
	require.NoError(t, err)
	require.Equal(t, projections.RebuildReport{Name: "orders", EventsRead: events, Rows: 2, Changed: 2}, report)
	require.Equal(t, written, table(t, pool, "orders"))
}

func TestRebuildOrders_OfACorrectProjectionChangesNothing(t *testing.T) {
	t.Parallel()
	pool, events := ordersFixture(t)
	written := table(t, pool, "orders")
	var stampedBefore time.Time
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT max(updated_at) FROM orders`).Scan(&stampedBefore))

	var calls [][2]int64
	report, err := projections.RebuildOrders(t.Context(), pool, func(done, total int64) { calls = append(calls, [2]int64{done, total}) })
	require.NoError(t, err)
	require.Equal(t, projections.RebuildReport{Name: "orders", EventsRead: events, Rows: 2, Changed: 0}, report)
	require.Equal(t, written, table(t, pool, "orders"))
	var stampedAfter time.Time
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT max(updated_at) FROM orders`).Scan(&stampedAfter))
	require.True(t, stampedBefore.Equal(stampedAfter), "no row was rewritten")
	require.Equal(t, [][2]int64{{0, events}, {events, events}}, calls, "progress at the start and after the one page")
}

// ledgerFixture opens a world account (money enters through it), alice and
// bob, and moves money between them through the real ledger service.
func ledgerFixture(t *testing.T) (*pgxpool.Pool, *ledger.Service, []ledger.Account) {
	t.Helper()
	pool := testdb.New(t)
	svc, err := ledger.NewService(pool, ledger.Config{})
	require.NoError(t, err)
	var accounts []ledger.Account
	for _, p := range []ledger.CreateAccountParams{{Name: "world", AllowNegative: true}, {Name: "alice"}, {Name: "bob"}} {
		a, err := svc.CreateAccount(t.Context(), p)
		require.NoError(t, err)
		accounts = append(accounts, a)
	}
	world, alice, bob := accounts[0].ID, accounts[1].ID, accounts[2].ID
	for i, tr := range []struct {
		from, to uuid.UUID
		amount   string
	}{{world, alice, "100.5000"}, {alice, bob, "30.2500"}, {bob, alice, "0.0001"}, {world, bob, "7"}} {
		transfer(t, svc, tr.from, tr.to, tr.amount, fmt.Sprintf("fixture-%d", i))
	}
	return pool, svc, accounts
}

func transfer(t *testing.T, svc *ledger.Service, from, to uuid.UUID, amount, key string) {
	t.Helper()
	a, err := ledger.ParseAmount(amount)
	require.NoError(t, err)
	_, created, err := svc.Transfer(t.Context(), ledger.TransferParams{From: from, To: to, Amount: a, IdempotencyKey: key})
	require.NoError(t, err)
	require.True(t, created)
}

// ledgerEvents is what the balances rebuild reads of ledgerFixture's log: 3
// openings and 2 postings per transfer.
const ledgerEvents = 3 + 2*4

func TestRebuildBalances_RepairsAPlantedBalance(t *testing.T) {
	t.Parallel()
	pool, _, accounts := ledgerFixture(t)
	written := table(t, pool, "account_balances")
	require.Len(t, written, 3)
	exec(t, pool, `UPDATE account_balances SET balance = balance + 5 WHERE account_id = $1`, accounts[1].ID)

	report, err := projections.RebuildBalances(t.Context(), pool, nil)
	require.NoError(t, err)
	require.Equal(t, projections.RebuildReport{Name: "balances", EventsRead: ledgerEvents, Rows: 3, Changed: 1}, report)
	require.Equal(t, written, table(t, pool, "account_balances"), "the rebuild equals what the writer produced")
	var alice string
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT balance::text FROM account_balances WHERE account_id = $1`, accounts[1].ID).Scan(&alice))
	require.Equal(t, "70.2501", alice)
}

func TestRebuildBalances_RepairsAPlantedVersionAndARemovedRow(t *testing.T) {
	t.Parallel()
	pool, _, accounts := ledgerFixture(t)
	written := table(t, pool, "account_balances")
	exec(t, pool, `UPDATE account_balances SET version = version + 1 WHERE account_id = $1`, accounts[2].ID)
	exec(t, pool, `DELETE FROM account_balances WHERE account_id = $1`, accounts[0].ID)

	report, err := projections.Rebuild(t.Context(), pool, "balances", nil)
	require.NoError(t, err)
	require.Equal(t, projections.RebuildReport{Name: "balances", EventsRead: ledgerEvents, Rows: 3, Changed: 2}, report)
	require.Equal(t, written, table(t, pool, "account_balances"))
}

func TestRebuildBalances_OfACorrectProjectionChangesNothing(t *testing.T) {
	t.Parallel()
	pool, _, _ := ledgerFixture(t)
	written := table(t, pool, "account_balances")

	report, err := projections.RebuildBalances(t.Context(), pool, nil)
	require.NoError(t, err)
	require.Equal(t, projections.RebuildReport{Name: "balances", EventsRead: ledgerEvents, Rows: 3, Changed: 0}, report)
	require.Equal(t, written, table(t, pool, "account_balances"))
}

func TestRebuildBalances_RefusesALogThatDisagreesWithTheEntries(t *testing.T) {
	t.Parallel()
	pool, _, accounts := ledgerFixture(t)
	written := table(t, pool, "account_balances")
	exec(t, pool, `UPDATE account_balances SET balance = balance + 5 WHERE account_id = $1`, accounts[1].ID)
	planted := table(t, pool, "account_balances")
	// A posting in bob's stream (at version 4 after the fixture's transfers)
	// with no ledger entry behind it.
	require.NoError(t, pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		data := fmt.Sprintf(`{"account_id":%q,"amount":"1.0000"}`, accounts[2].ID)
		_, err := eventstore.AppendTx(t.Context(), tx, logevent.AccountStream(accounts[2].ID), 4,
			eventstore.NewEvent{Type: logevent.TypeAccountCredited, Data: json.RawMessage(data)})
		return err
	}))
	require.NotEqual(t, written, planted)

	_, err := projections.RebuildBalances(t.Context(), pool, nil)
	require.ErrorIs(t, err, projections.ErrRebuildMismatch)
	require.ErrorContains(t, err, accounts[2].ID.String())
	require.Equal(t, planted, table(t, pool, "account_balances"), "nothing was swapped in")
}

func TestRebuild_OfAnEmptyLogLeavesEmptyProjections(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	for _, name := range projections.Names() {
		var calls [][2]int64
		report, err := projections.Rebuild(t.Context(), pool, name, func(done, total int64) { calls = append(calls, [2]int64{done, total}) })
		require.NoError(t, err, name)
		require.Equal(t, projections.RebuildReport{Name: name}, report)
		require.Equal(t, [][2]int64{{0, 0}}, calls, name)
	}
	require.Empty(t, table(t, pool, "orders"))
	require.Empty(t, table(t, pool, "account_balances"))
}

func TestRebuildOrders_OfAnEmptyLogDeletesEveryOrder(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	require.True(t, apply(t, pool, update(t, "o-orphan", "placed", base)), "a row the log does not hold")

	report, err := projections.RebuildOrders(t.Context(), pool, nil)
	require.NoError(t, err)
	require.Equal(t, projections.RebuildReport{Name: "orders", Changed: 1}, report)
	require.Empty(t, table(t, pool, "orders"))
}

func TestRebuild_UnknownNameFails(t *testing.T) {
	t.Parallel()
	_, err := projections.Rebuild(t.Context(), nil, "nope", nil)
	require.ErrorIs(t, err, projections.ErrUnknownProjection)
	require.ErrorContains(t, err, "balances, orders")
}

func TestRebuildBalances_PagesThroughALogLongerThanAPage(t *testing.T) {
	t.Parallel()
	pool, svc, accounts := ledgerFixture(t)
	// 2,600 transfers write 5,200 postings: more than one page of 5,000.
	const transfers = 2600
	for i := range transfers {
		transfer(t, svc, accounts[0].ID, accounts[1+i%2].ID, "0.0100", fmt.Sprintf("many-%d", i))
	}
	written := table(t, pool, "account_balances")
	exec(t, pool, `UPDATE account_balances SET balance = balance - 1 WHERE account_id = $1`, accounts[0].ID)

	var calls int
	report, err := projections.RebuildBalances(t.Context(), pool, func(done, total int64) { calls++ })
	require.NoError(t, err)
	require.Equal(t, projections.RebuildReport{Name: "balances", EventsRead: ledgerEvents + 2*transfers, Rows: 3, Changed: 1}, report)
	require.Equal(t, written, table(t, pool, "account_balances"))
	require.Equal(t, 3, calls, "the start and two pages")
}

// Writers keep transferring while the rebuild reads the log: the rebuild
// either swaps in a table that the verification under the lock found equal to
// the ledger, or refuses with ErrRebuildMismatch and changes nothing. Either
// way the projection ends equal to the ledger entries.
func TestRebuildBalances_WhileTransfersContinue(t *testing.T) {
	t.Parallel()
	pool, svc, accounts := ledgerFixture(t)
	const writers, perWriter = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				a, _ := ledger.ParseAmount("1")
				_, _, err := svc.Transfer(t.Context(), ledger.TransferParams{
					From: accounts[0].ID, To: accounts[1+(w+i)%2].ID, Amount: a, IdempotencyKey: fmt.Sprintf("busy-%d-%d", w, i),
				})
				errs <- err
			}
		})
	}
	var report projections.RebuildReport
	var err error
	for range 3 {
		if report, err = projections.RebuildBalances(t.Context(), pool, nil); err == nil {
			break
		}
		require.ErrorIs(t, err, projections.ErrRebuildMismatch)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int64(0), report.Changed, "the live table was right all along")
	report, err = projections.RebuildBalances(t.Context(), pool, nil)
	require.NoError(t, err)
	require.Equal(t, projections.RebuildReport{Name: "balances", EventsRead: ledgerEvents + 2*writers*perWriter, Rows: 3}, report)

	var wrong int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM account_balances b
		JOIN (SELECT account_id, sum(amount) AS total FROM ledger_entries GROUP BY 1) e USING (account_id)
		WHERE b.balance <> e.total`).Scan(&wrong))
	require.Zero(t, wrong)
}
