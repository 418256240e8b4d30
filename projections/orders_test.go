package projections_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/projections"
)

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func apply(t *testing.T, pool *pgxpool.Pool, u projections.OrderUpdate) bool {
	t.Helper()
	var applied bool
	require.NoError(t, pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		var err error
		applied, err = projections.ApplyOrderUpdateTx(t.Context(), tx, u)
		return err
	}))
	return applied
}

func getOrder(t *testing.T, pool *pgxpool.Pool, orderID string) projections.Order {
	t.Helper()
	o, found, err := projections.GetOrder(t.Context(), pool, orderID)
	require.NoError(t, err)
	require.True(t, found, "order %s", orderID)
	return o
}

func requireOrder(t *testing.T, want projections.OrderUpdate, got projections.Order) {
	t.Helper()
	require.Equal(t, want.OrderID, got.OrderID)
	require.Equal(t, want.Status, got.Status)
	require.Equal(t, want.EventID, got.LastEventID)
	require.True(t, want.OccurredAt.Equal(got.OccurredAt), "occurred_at %s, want %s", got.OccurredAt, want.OccurredAt)
}

func update(t *testing.T, orderID, status string, at time.Time) projections.OrderUpdate {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return projections.OrderUpdate{OrderID: orderID, Status: status, OccurredAt: at, EventID: id}
}

func TestApplyOrderUpdateTx_FirstUpdateCreatesTheOrder(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	u := update(t, "o-1", "placed", base)

	require.True(t, apply(t, pool, u))
	requireOrder(t, u, getOrder(t, pool, "o-1"))
}

func TestApplyOrderUpdateTx_NewerUpdateWins(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	require.True(t, apply(t, pool, update(t, "o-1", "placed", base)))

	newer := update(t, "o-1", "paid", base.Add(time.Microsecond))
	require.True(t, apply(t, pool, newer))
	requireOrder(t, newer, getOrder(t, pool, "o-1"))
}

func TestApplyOrderUpdateTx_OlderUpdateIsIgnored(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	current := update(t, "o-1", "shipped", base)
	require.True(t, apply(t, pool, current))

	older := update(t, "o-1", "paid", base.Add(-time.Second))
	require.False(t, apply(t, pool, older))
	requireOrder(t, current, getOrder(t, pool, "o-1"))

	require.False(t, apply(t, pool, current), "the same update again changes nothing")
	requireOrder(t, current, getOrder(t, pool, "o-1"))
}

func TestApplyOrderUpdateTx_SameTimeIsDecidedByTheGreaterEventID(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	low := projections.OrderUpdate{OrderID: "o-1", Status: "low", OccurredAt: base,
		EventID: uuid.MustParse("00000000-0000-7000-8000-000000000001")}
	high := projections.OrderUpdate{OrderID: "o-1", Status: "high", OccurredAt: base,
		EventID: uuid.MustParse("00000000-0000-7000-8000-000000000002")}

	// Either arrival order ends with the same row.
	require.True(t, apply(t, pool, low))
	require.True(t, apply(t, pool, high))
	requireOrder(t, high, getOrder(t, pool, "o-1"))

	high.OrderID, low.OrderID = "o-2", "o-2"
	require.True(t, apply(t, pool, high))
	require.False(t, apply(t, pool, low))
	requireOrder(t, high, getOrder(t, pool, "o-2"))
}

func TestApplyOrderUpdateTx_OrdersAreIndependent(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	a := update(t, "o-a", "paid", base.Add(time.Hour))
	b := update(t, "o-b", "placed", base)

	require.True(t, apply(t, pool, a))
	require.True(t, apply(t, pool, b), "an older time on another order does not matter")
	requireOrder(t, a, getOrder(t, pool, "o-a"))
	requireOrder(t, b, getOrder(t, pool, "o-b"))
}

func TestApplyOrderUpdateTx_RefusesAnUpdateWithAFieldMissing(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	full := update(t, "o-1", "paid", base)

	for name, u := range map[string]projections.OrderUpdate{
		"order id":    {Status: full.Status, OccurredAt: full.OccurredAt, EventID: full.EventID},
		"status":      {OrderID: full.OrderID, OccurredAt: full.OccurredAt, EventID: full.EventID},
		"occurred at": {OrderID: full.OrderID, Status: full.Status, EventID: full.EventID},
		"event id":    {OrderID: full.OrderID, Status: full.Status, OccurredAt: full.OccurredAt},
	} {
		t.Run("without "+name, func(t *testing.T) {
			err := pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
				applied, err := projections.ApplyOrderUpdateTx(t.Context(), tx, u)
				require.False(t, applied)
				return err
			})
			require.EqualError(t, err, "apply order update: order id, status, time and event id are required")
		})
	}
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM orders`).Scan(&n))
	require.Zero(t, n)
}

func TestApplyOrderUpdateTx_RollsBackWithTheCallersTransaction(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	applied, err := projections.ApplyOrderUpdateTx(ctx, tx, update(t, "o-1", "paid", base))
	require.NoError(t, err)
	require.True(t, applied)
	require.NoError(t, tx.Rollback(ctx))

	_, found, err := projections.GetOrder(ctx, pool, "o-1")
	require.NoError(t, err)
	require.False(t, found)
}

func TestGetOrder_UnknownOrderIsNotFound(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)

	o, found, err := projections.GetOrder(t.Context(), pool, "nope")
	require.NoError(t, err)
	require.False(t, found)
	require.Equal(t, projections.Order{}, o)
}
