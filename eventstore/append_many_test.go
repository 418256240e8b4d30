package eventstore_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/internal/testdb"
)

func TestAppendManyTx_AppendsToEveryStreamWithOneOutboxMessageForAll(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	_, err := appendCommitted(t, pool, "s-2", eventstore.ExpectNew, event("t", `{"n":0}`))
	require.NoError(t, err)
	var got [][]eventstore.Recorded
	require.NoError(t, pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		var err error
		got, err = eventstore.AppendManyTx(t.Context(), tx, []eventstore.Append{
			{StreamID: "s-1", ExpectedVersion: eventstore.ExpectNew, Events: []eventstore.NewEvent{event("t", `{"n":1}`), event("t", `{"n":2}`)}},
			{StreamID: "s-2", ExpectedVersion: 1, Events: []eventstore.NewEvent{event("t", `{"n":3}`)}},
		})
		return err
	}))
	require.Len(t, got, 2)
	require.Equal(t, []int64{1, 2}, []int64{got[0][0].Version, got[0][1].Version})
	require.Equal(t, int64(2), got[1][0].Version)
	require.Less(t, got[0][0].Position, got[0][1].Position)
	require.Equal(t, 4, count(t, pool, "event_log"))
	require.Equal(t, 4, outboxEvents(t, pool))
	rows := outboxRows(t, pool)
	require.Len(t, rows, 2, "the first append's message, then one for the three events of this one")
	require.Equal(t, "3", rows[1].Envelope.Metadata[eventstore.MetaEventCount])
}

func TestAppendManyTx_OneStaleStreamFailsTheWholeAppend(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	_, err := appendCommitted(t, pool, "s-2", eventstore.ExpectNew, event("t", `{}`))
	require.NoError(t, err)
	err = pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		_, err := eventstore.AppendManyTx(t.Context(), tx, []eventstore.Append{
			{StreamID: "s-1", ExpectedVersion: eventstore.ExpectNew, Events: []eventstore.NewEvent{event("t", `{}`)}},
			{StreamID: "s-2", ExpectedVersion: eventstore.ExpectNew, Events: []eventstore.NewEvent{event("t", `{}`)}},
		})
		return err
	})
	require.ErrorIs(t, err, eventstore.ErrVersionConflict)
	require.ErrorContains(t, err, "s-2")
	require.Equal(t, 1, count(t, pool, "event_log"))
	require.Equal(t, 1, outboxEvents(t, pool))
}
