package projections_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/projections"
)

// Applying updates in one call leaves what applying them one by one, in any
// order, leaves: the newest update of each order.
func TestApplyOrderUpdatesTx_AgreesWithOneByOneInAnyOrder(t *testing.T) {
	t.Parallel()
	batchPool, seqPool := testdb.New(t), testdb.New(t)
	base := time.Now().UTC().Truncate(time.Microsecond)
	var updates []projections.OrderUpdate
	for i := range 60 {
		updates = append(updates, projections.OrderUpdate{
			OrderID:    []string{"a", "b", "c"}[i%3],
			Status:     []string{"created", "paid", "shipped", "delivered"}[i%4],
			OccurredAt: base.Add(time.Duration(i%7) * time.Second), // ties on purpose: the event id decides
			EventID:    uuid.Must(uuid.NewV7()),
		})
	}
	rand.Shuffle(len(updates), func(i, j int) { updates[i], updates[j] = updates[j], updates[i] })

	require.NoError(t, pgx.BeginFunc(t.Context(), batchPool, func(tx pgx.Tx) error {
		_, err := projections.ApplyOrderUpdatesTx(t.Context(), tx, updates)
		return err
	}))
	for _, u := range updates {
		apply(t, seqPool, u)
	}
	for _, id := range []string{"a", "b", "c"} {
		require.Equal(t, getOrder(t, seqPool, id), getOrder(t, batchPool, id), "order %s", id)
	}
}

func TestApplyOrderUpdatesTx_RejectsAnIncompleteUpdateAndWritesNothing(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ok := projections.OrderUpdate{OrderID: "a", Status: "paid", OccurredAt: time.Now(), EventID: uuid.Must(uuid.NewV7())}
	err := pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		_, err := projections.ApplyOrderUpdatesTx(t.Context(), tx, []projections.OrderUpdate{ok, {OrderID: "b"}})
		return err
	})
	require.ErrorContains(t, err, "required")
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM orders`).Scan(&n))
	require.Zero(t, n)
}
