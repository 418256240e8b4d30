package ingest_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/logevent"
	"github.com/daybook/daybook/projections"
)

func firsts(events ...ingest.Event) []ingest.Delivery {
	out := make([]ingest.Delivery, len(events))
	for i, e := range events {
		out[i] = ingest.Delivery{Event: e, First: true}
	}
	return out
}

// completedAtFirstSight reports whether event id's row was inserted
// COMPLETED: its PENDING and PROCESSING states were never committed, so the
// row was never updated and its timestamps are the insert's.
func completedAtFirstSight(t *testing.T, f *fixture, id uuid.UUID) bool {
	t.Helper()
	rec := f.record(t, id)
	return rec.Status == ingest.StatusCompleted && rec.Attempts == 1 && rec.CreatedAt.Equal(rec.UpdatedAt)
}

// A batch of first deliveries is stored COMPLETED by the transaction that
// processes it, with every effect of the recorded path: one log entry each,
// carried by the batch's one outbox message, the orders projection, and a
// pointer into one segment.
func TestProcessDeliveries_FirstDeliveriesAreStoredCompletedWithAllTheirEffects(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	older := orderEvent(t, "o-1", "created", time.Now().Add(-2*time.Hour))
	newer := orderEvent(t, "o-1", "paid", time.Now().Add(-time.Hour))
	clicks := newEvent(t, "clicks", `{"n":1}`)
	clicks.CorrelationID = "corr-1"
	batch := []ingest.Event{newer, clicks, older}

	for i, r := range f.proc.ProcessDeliveries(ctx, firsts(batch...)) {
		require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, r, "event %d", i)
	}

	segments := f.segments(t)
	require.Len(t, segments, 1)
	for _, e := range batch {
		require.True(t, completedAtFirstSight(t, f, e.ID), "event %s", e.ID)
		require.Equal(t, segments[0], f.record(t, e.ID).Archive.Segment)
		require.JSONEq(t, string(e.Payload), string(f.archived(t, e.ID).Payload))
		require.Equal(t, 1, logRows(t, f.pool, e.ID))
	}
	require.Equal(t, len(batch), count(t, f.pool, countOutboxEvents))
	require.Equal(t, 1, count(t, f.pool, `SELECT count(*) FROM outbox`), "one log message carries the batch")
	require.Equal(t, 1, count(t, f.pool, `SELECT count(*) FROM event_log
		WHERE stream_id = $1 AND metadata->>'correlation_id' = 'corr-1'`, "ingest-"+clicks.ID.String()))
	order, ok, err := projections.GetOrder(ctx, f.pool, "o-1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "paid", order.Status, "the newer update wins")
}

// A first delivery of an event the table already knows, or of a key another
// event holds, takes the recorded path and gets its outcome there.
func TestProcessDeliveries_FirstDeliveryOfAKnownEventOrKeyTakesTheRecordedPath(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()

	// retried: its first attempt failed and put it back to PENDING.
	retried := newEvent(t, "clicks", `{"n":1}`)
	claims, err := f.store.ClaimMany(ctx, []ingest.Event{retried})
	require.NoError(t, err)
	require.Equal(t, ingest.Claimed, claims[0].Outcome)
	ok, err := f.store.Retry(ctx, ingest.FinishAttemptParams{ID: retried.ID, Attempts: 1, Error: "boom"})
	require.NoError(t, err)
	require.True(t, ok)
	// done: completed before.
	done := newEvent(t, "clicks", `{"n":2}`)
	_, err = f.proc.Process(ctx, done)
	require.NoError(t, err)
	// twin: a new event with done's key.
	twin := newEvent(t, "clicks", `{"n":3}`)
	twin.IdempotencyKey = done.IdempotencyKey
	// pair: two new events sharing one key in the same batch.
	pairA, pairB := newEvent(t, "clicks", `{"n":4}`), newEvent(t, "clicks", `{"n":5}`)
	pairB.IdempotencyKey = pairA.IdempotencyKey

	results := f.proc.ProcessDeliveries(ctx, firsts(retried, done, twin, pairA, pairB))
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, results[0])
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeSkipped}, results[1], "already COMPLETED")
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeDuplicate}, results[2])
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, results[3])
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeDuplicate}, results[4])

	rec := f.record(t, retried.ID)
	require.Equal(t, ingest.StatusCompleted, rec.Status)
	require.Equal(t, 2, rec.Attempts, "the recorded path counted its second attempt")
	require.True(t, completedAtFirstSight(t, f, pairA.ID))
	require.Equal(t, 1, logRows(t, f.pool, retried.ID))
	require.Equal(t, 1, logRows(t, f.pool, done.ID))
	require.Zero(t, logRows(t, f.pool, twin.ID))
	require.Zero(t, logRows(t, f.pool, pairB.ID))
	require.Zero(t, count(t, f.pool, `SELECT count(*) FROM ingestion_events WHERE id = ANY($1)`, []uuid.UUID{twin.ID, pairB.ID}))
}

// A first delivery that breaks a rule is failed on the recorded path, which
// records it FAILED with its reason, as any attempt would.
func TestProcessDeliveries_FirstDeliveryBreakingARuleEndsFailed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	broken := newEvent(t, logevent.SourceOrderUpdates, `{"status":"paid"}`) // no order_id
	good := newEvent(t, "clicks", `{}`)

	results := f.proc.ProcessDeliveries(t.Context(), firsts(broken, good))
	require.True(t, ingest.IsPermanent(results[0].Err), "%v", results[0].Err)
	require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, results[1])
	rec := f.record(t, broken.ID)
	require.Equal(t, ingest.StatusFailed, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.Contains(t, rec.LastError, "order_id")
	require.True(t, completedAtFirstSight(t, f, good.ID))
}

// When the first-sight transaction fails, nothing of it stays but its
// segment: the same call completes the events on the recorded path, each
// row pointing into the recorded path's own segment.
func TestProcessDeliveries_FailedFirstSightTransactionFallsBackToTheRecordedPath(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	// A fault that only the first-sight insert meets.
	_, err := f.pool.Exec(ctx, `CREATE FUNCTION refuse_completed_insert() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.status = 'COMPLETED' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_completed_insert BEFORE INSERT ON ingestion_events
			FOR EACH ROW EXECUTE FUNCTION refuse_completed_insert();`)
	require.NoError(t, err)
	a, b := newEvent(t, "clicks", `{"n":1}`), orderEvent(t, "o-9", "paid", time.Now())
	var logged bytes.Buffer
	proc, err := ingest.NewProcessor(f.pool, f.store, f.archive, ingest.ProcessorConfig{
		MaxAttempts: maxAttempts, Logger: slog.New(slog.NewTextHandler(&logged, nil)),
	})
	require.NoError(t, err)

	for _, r := range proc.ProcessDeliveries(ctx, firsts(a, b)) {
		require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, r)
	}
	require.Contains(t, logged.String(), "first-sight transaction failed", "the second round of work is seen")
	require.Contains(t, logged.String(), "injected fault")

	segments := f.segments(t)
	require.Len(t, segments, 2, "the failed transaction's segment, and the recorded path's")
	recorded := f.record(t, a.ID).Archive.Segment
	for _, e := range []ingest.Event{a, b} {
		rec := f.record(t, e.ID)
		require.Equal(t, ingest.StatusCompleted, rec.Status)
		require.Equal(t, 1, rec.Attempts)
		require.False(t, rec.CreatedAt.Equal(rec.UpdatedAt), "claimed, then completed")
		require.Equal(t, recorded, rec.Archive.Segment)
		require.JSONEq(t, string(e.Payload), string(f.archived(t, e.ID).Payload))
		require.Equal(t, 1, logRows(t, f.pool, e.ID))
	}
	require.Equal(t, 2, count(t, f.pool, countOutboxEvents))
	require.Equal(t, 1, count(t, f.pool, `SELECT count(*) FROM orders WHERE order_id = 'o-9'`))
}

// Redeliveries and first deliveries mixed in one batch each get their own
// path; a redelivered event is never stored at first sight.
func TestProcessDeliveries_RedeliveryInABatchOfFirstsIsClaimedFirst(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var deliveries []ingest.Delivery
	for i := range 10 {
		deliveries = append(deliveries, ingest.Delivery{Event: newEvent(t, "clicks", fmt.Sprintf(`{"n":%d}`, i)), First: i%2 == 0})
	}
	for i, r := range f.proc.ProcessDeliveries(t.Context(), deliveries) {
		require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, r, "event %d", i)
	}
	for i, d := range deliveries {
		require.Equal(t, d.First, completedAtFirstSight(t, f, d.ID), "event %d", i)
		require.Equal(t, 1, f.record(t, d.ID).Attempts)
	}
}

// The database admits a row inserted COMPLETED only at its first attempt,
// with a whole archive pointer and no error; any other non-PENDING insert,
// and a pointer on a row that does not start COMPLETED, is refused.
func TestStateMachineTrigger_AdmitsAnInsertCompletedAtFirstSightOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	hash := sha256.Sum256([]byte(`{}`))
	insert := func(status string, attempts int, segment *string, lastError *string) error {
		_, err := f.pool.Exec(ctx, `INSERT INTO ingestion_events (id, idempotency_key, source, type, payload, received_at,
				status, attempts, last_error, archive_segment, archive_offset, archive_length, archive_sha256)
			VALUES (gen_random_uuid(), gen_random_uuid()::text, 's', 't', '{}', now(), $1, $2, $3, $4,
				CASE WHEN $4::text IS NULL THEN NULL ELSE 0 END, CASE WHEN $4::text IS NULL THEN NULL ELSE 2 END,
				CASE WHEN $4::text IS NULL THEN NULL ELSE $5::bytea END)`,
			status, attempts, lastError, segment, hash[:])
		return err
	}
	seg, boom := "segments/2026/12/03/x.ndjson.gz", "boom"

	require.NoError(t, insert("COMPLETED", 1, &seg, nil))
	for name, err := range map[string]error{
		"COMPLETED without a pointer": insert("COMPLETED", 1, nil, nil),
		"COMPLETED at attempt 2":      insert("COMPLETED", 2, &seg, nil),
		"COMPLETED with an error":     insert("COMPLETED", 1, &seg, &boom),
		"FAILED at attempt 1":         insert("FAILED", 1, nil, nil),
		"PROCESSING at attempt 1":     insert("PROCESSING", 1, nil, nil),
	} {
		pgErr := pgError(t, err)
		require.Equal(t, "23514", pgErr.Code, name)
		require.Contains(t, pgErr.Message, "must start PENDING with 0 attempts, or COMPLETED at its first attempt", name)
	}
	pgErr := pgError(t, insert("PENDING", 0, &seg, nil))
	require.Equal(t, "ingestion_events_archive_pointer", pgErr.ConstraintName, pgErr.Message)
	require.Equal(t, 1, count(t, f.pool, `SELECT count(*) FROM ingestion_events`))
}

// A first delivery's record is archived as the body it came in, when that
// fits on one line; a body spread over lines is archived encoded again.
func TestProcessDeliveries_FirstDeliveryArchivesItsBodyAsItCame(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	oneLine, spread := newEvent(t, "clicks", `{"n":1}`), newEvent(t, "clicks", `{"n":2}`)
	encoded, err := oneLine.Encode()
	require.NoError(t, err)
	asItCame := append([]byte(`{ `), encoded[1:]...) // not how Encode writes it
	pretty, err := json.MarshalIndent(spread, "", "  ")
	require.NoError(t, err)

	results := f.proc.ProcessDeliveries(ctx, []ingest.Delivery{
		{Event: oneLine, First: true, Raw: asItCame},
		{Event: spread, First: true, Raw: pretty},
	})
	for _, r := range results {
		require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, r)
	}
	line, err := archive.ReadLine(ctx, f.archive, *f.record(t, oneLine.ID).Archive)
	require.NoError(t, err)
	require.Equal(t, asItCame, line)
	line, err = archive.ReadLine(ctx, f.archive, *f.record(t, spread.ID).Archive)
	require.NoError(t, err)
	want, err := spread.Encode()
	require.NoError(t, err)
	require.Equal(t, want, line)
	require.Equal(t, spread.ID, f.archived(t, spread.ID).ID)
}
