package ingest_test

import (
	"encoding/json"
	"fmt"
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
	// The lone commits reuse the batch's segment: its bytes were durable.
	require.Len(t, f.segments(t), 1)
	for _, e := range []ingest.Event{a, c} {
		require.Equal(t, f.segments(t)[0], f.record(t, e.ID).Archive.Segment)
		require.JSONEq(t, string(e.Payload), string(f.archived(t, e.ID).Payload))
	}
	require.Nil(t, f.record(t, b.ID).Archive)
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

// A batch of N events is archived as ONE segment (one file), and each row's
// pointer reads back its own event.
func TestProcessBatch_ArchivesOneSegmentAndEachRowPointsAtItsOwnRecord(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	var batch []ingest.Event
	for i := range 25 {
		if i%3 == 0 {
			batch = append(batch, orderEvent(t, fmt.Sprintf("o-%d", i), "paid", time.Now()))
			continue
		}
		batch = append(batch, newEvent(t, "clicks", fmt.Sprintf(`{"n":%d,"note":"line\nbreak \u2713"}`, i)))
	}
	// Raw newlines in any field are escaped: each record stays one line.
	batch[1].Type = "click\nwith a newline"
	batch[2].Payload = json.RawMessage("{\n  \"pretty\": \"printed\"\n}")

	for i, r := range f.proc.ProcessBatch(ctx, batch) {
		require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, r, "event %d", i)
	}

	segments := f.segments(t)
	require.Len(t, segments, 1)
	offset := int64(-1)
	for i, e := range batch {
		rec := f.record(t, e.ID)
		require.NotNil(t, rec.Archive, "event %d", i)
		require.Equal(t, segments[0], rec.Archive.Segment)
		require.Greater(t, rec.Archive.Offset, offset, "lines in the batch's order")
		offset = rec.Archive.Offset
		archived := f.archived(t, e.ID)
		require.Equal(t, e.ID, archived.ID)
		require.Equal(t, e.IdempotencyKey, archived.IdempotencyKey)
		require.Equal(t, e.Type, archived.Type)
		require.JSONEq(t, string(e.Payload), string(archived.Payload))
	}
}

// The shared commit of the first attempt fails after its segment was
// written; the retry writes a segment of its own, and every row points into
// the retry's segment at its own record, never into the orphaned first one.
func TestProcessBatch_RetryAfterAFailedCommitPointsAtTheRetrysSegment(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	a, b, c := newEvent(t, "clicks", `{"n":1}`), newEvent(t, "clicks", `{"n":22}`), newEvent(t, "clicks", `{"n":333}`)
	// A fault in the database: the event log refuses every append, so the
	// shared commit and each lone commit after it fail.
	_, err := f.pool.Exec(ctx, `CREATE FUNCTION refuse_append() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'injected fault: the log refuses appends'; END $$;
		CREATE TRIGGER refuse_append BEFORE INSERT ON event_log FOR EACH STATEMENT EXECUTE FUNCTION refuse_append();`)
	require.NoError(t, err)

	for _, r := range f.proc.ProcessBatch(ctx, []ingest.Event{a, b, c}) {
		require.ErrorContains(t, r.Err, "injected fault")
		require.False(t, ingest.IsPermanent(r.Err))
	}
	orphans := f.segments(t)
	require.Len(t, orphans, 1, "the first attempt's segment was written")
	for _, e := range []ingest.Event{a, b, c} {
		rec := f.record(t, e.ID)
		require.Equal(t, ingest.StatusPending, rec.Status)
		require.Nil(t, rec.Archive, "no pointer without a commit")
	}

	_, err = f.pool.Exec(ctx, `DROP TRIGGER refuse_append ON event_log`)
	require.NoError(t, err)
	// The retry comes in another order, so every line lies elsewhere than in
	// the first attempt's segment.
	for _, r := range f.proc.ProcessBatch(ctx, []ingest.Event{c, b, a}) {
		require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, r)
	}

	segments := f.segments(t)
	require.Len(t, segments, 2)
	retry := segments[0]
	if retry == orphans[0] {
		retry = segments[1]
	}
	for _, e := range []ingest.Event{a, b, c} {
		rec := f.record(t, e.ID)
		require.Equal(t, 2, rec.Attempts)
		require.Equal(t, retry, rec.Archive.Segment)
		archived := f.archived(t, e.ID)
		require.Equal(t, e.ID, archived.ID)
		require.JSONEq(t, string(e.Payload), string(archived.Payload))
	}
	require.Zero(t, count(t, f.pool, `SELECT count(*) FROM ingestion_events WHERE archive_segment = $1`, orphans[0]))
}
