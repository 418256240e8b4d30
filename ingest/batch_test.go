package ingest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/logevent"
	"github.com/daybook/daybook/projections"
)

// One batch holding every kind of event gets, per event, what processing it
// alone would have given.
func TestProcessBatch_EachEventGetsItsOwnOutcome(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	good := newEvent(t, "clicks", `{"x":1}`)
	older := orderEvent(t, "o-1", "created", time.Now().Add(-2*time.Hour))
	newer := orderEvent(t, "o-1", "paid", time.Now().Add(-time.Hour))
	broken := newEvent(t, logevent.SourceOrderUpdates, `{"status":"paid"}`) // no order_id: a rule violation
	done := newEvent(t, "clicks", `{"x":2}`)
	_, err := f.proc.Process(ctx, done)
	require.NoError(t, err)
	sameKey := newEvent(t, "clicks", `{"x":3}`)
	sameKey.IdempotencyKey = good.IdempotencyKey

	batch := []ingest.Event{newer, good, broken, done, sameKey, older, good}
	results := f.proc.ProcessBatch(ctx, batch)
	require.Len(t, results, len(batch))

	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, results[0])
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, results[1])
	require.True(t, ingest.IsPermanent(results[2].Err), "rule violation: %v", results[2].Err)
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeSkipped}, results[3], "already COMPLETED")
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeDuplicate}, results[4])
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, results[5])
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeSkipped}, results[6], "a second copy in the same batch")

	require.Equal(t, ingest.StatusFailed, f.record(t, broken.ID).Status)
	order, ok, err := projections.GetOrder(ctx, f.pool, "o-1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "paid", order.Status, "the newer update wins inside one batch too")
	var logRows int
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT count(*) FROM event_log`).Scan(&logRows))
	require.Equal(t, 4, logRows, "done, newer, good, older: once each")
}

// When the shared transaction fails, each event is committed on its own, so
// one event whose effects cannot be written does not fail the others.
func TestProcessBatch_OneEventFailingTheSharedCommitFailsAlone(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	a, b, c := newEvent(t, "clicks", `{"n":1}`), newEvent(t, "clicks", `{"n":2}`), newEvent(t, "clicks", `{"n":3}`)
	// b's log stream already has its first event: b's append conflicts.
	tx, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = eventstore.AppendTx(ctx, tx, "ingest-"+b.ID.String(), eventstore.ExpectNew,
		eventstore.NewEvent{Type: logevent.TypeEventProcessed, Data: []byte(`{}`)})
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))

	results := f.proc.ProcessBatch(ctx, []ingest.Event{a, b, c})
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, results[0])
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeSkipped}, results[1], "its stream shows another attempt committed")
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, results[2])
	require.Equal(t, ingest.StatusCompleted, f.record(t, a.ID).Status)
	require.Equal(t, ingest.StatusCompleted, f.record(t, c.ID).Status)
	require.Equal(t, ingest.StatusProcessing, f.record(t, b.ID).Status, "left for the rescuer")
}

func TestProcessBatch_RefusesMoreThanBatchSizeMax(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	events := make([]ingest.Event, ingest.BatchSizeMax+1)
	for i := range events {
		events[i] = newEvent(t, "clicks", `{}`)
	}
	for _, r := range f.proc.ProcessBatch(t.Context(), events) {
		require.ErrorContains(t, r.Err, "at most")
	}
	var rows int
	require.NoError(t, f.pool.QueryRow(t.Context(), `SELECT count(*) FROM ingestion_events`).Scan(&rows))
	require.Zero(t, rows)
}
