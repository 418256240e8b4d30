package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/logevent"
	"github.com/daybook/daybook/projections"
)

type fixture struct {
	pool    *pgxpool.Pool
	store   *ingest.Store
	dir     string
	archive *archive.FileStore
	proc    *ingest.Processor
}

const maxAttempts = 3

func newFixture(t *testing.T) *fixture {
	t.Helper()
	pool := testdb.New(t)
	dir := filepath.Join(t.TempDir(), "archive")
	fs, err := archive.NewFileStore(dir)
	require.NoError(t, err)
	f := &fixture{pool: pool, store: ingest.NewStore(pool), dir: dir, archive: fs}
	f.proc = f.processor(t, fs, maxAttempts)
	return f
}

func (f *fixture) processor(t *testing.T, a archive.Store, attempts int) *ingest.Processor {
	t.Helper()
	p, err := ingest.NewProcessor(f.pool, f.store, a, ingest.ProcessorConfig{MaxAttempts: attempts})
	require.NoError(t, err)
	return p
}

// breakArchive puts a regular file where the archive directory was, so that
// every Put fails (permissions would not stop root).
func (f *fixture) breakArchive(t *testing.T) {
	t.Helper()
	require.NoError(t, os.RemoveAll(f.dir))
	require.NoError(t, os.WriteFile(f.dir, []byte("not a directory"), 0o600))
}

func (f *fixture) fixArchive(t *testing.T) {
	t.Helper()
	require.NoError(t, os.Remove(f.dir))
	_, err := archive.NewFileStore(f.dir) // lays the directory out again
	require.NoError(t, err)
}

func (f *fixture) record(t *testing.T, id uuid.UUID) ingest.Record {
	t.Helper()
	rec, err := f.store.Get(t.Context(), id)
	require.NoError(t, err)
	return rec
}

// archived reads back the record archived for event id, through its row's
// pointer, as GET /events/{id}/payload does.
func (f *fixture) archived(t *testing.T, id uuid.UUID) ingest.Event {
	t.Helper()
	e, err := ingest.ReadArchived(t.Context(), f.archive, f.record(t, id))
	require.NoError(t, err)
	return e
}

// segments lists the keys of the segment files in the archive, sorted.
func (f *fixture) segments(t *testing.T) []string {
	t.Helper()
	var keys []string
	root := filepath.Join(f.dir, "segments")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == root {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(f.dir, path)
		keys = append(keys, filepath.ToSlash(rel))
		return err
	})
	require.NoError(t, err)
	return keys
}

// hookArchive runs before ahead of every segment write, to act while an
// attempt is between its claim and its commit.
type hookArchive struct {
	archive.Store
	before func() error
}

func (h hookArchive) PutSegment(ctx context.Context, key string, body []byte) error {
	if err := h.before(); err != nil {
		return err
	}
	return h.Store.PutSegment(ctx, key, body)
}

func TestProcessor_OrderUpdateIsCompletedWithAllItsEffects(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	e := orderEvent(t, "o-1", "paid", time.Now().Add(-time.Hour))
	e.CorrelationID = "corr-1"

	outcome, err := f.proc.Process(ctx, e)
	require.NoError(t, err)
	require.Equal(t, ingest.OutcomeCompleted, outcome)

	rec := f.record(t, e.ID)
	require.Equal(t, ingest.StatusCompleted, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.Empty(t, rec.LastError)

	logged, err := eventstore.ReadStream(ctx, f.pool, "ingest-"+e.ID.String())
	require.NoError(t, err)
	require.Len(t, logged, 1)
	require.Equal(t, logevent.TypeEventProcessed, logged[0].Type)
	require.Equal(t, "ingest.event_processed", logged[0].Type)
	require.EqualValues(t, 1, logged[0].Version)
	require.Equal(t, map[string]string{"correlation_id": "corr-1"}, logged[0].Metadata)
	var data map[string]any
	require.NoError(t, json.Unmarshal(logged[0].Data, &data))
	require.Equal(t, map[string]any{
		"event_id":        e.ID.String(),
		"idempotency_key": e.IdempotencyKey,
		"source":          "order_updates",
		"type":            "order.updated",
		"order_id":        "o-1",
		"payload":         map[string]any{"status": "paid", "amount": "12.30"},
		"occurred_at":     data["occurred_at"],
		"received_at":     data["received_at"],
	}, data)
	for _, field := range []struct {
		name string
		want time.Time
	}{{"occurred_at", *e.OccurredAt}, {"received_at", e.ReceivedAt}} {
		at, err := time.Parse(time.RFC3339Nano, data[field.name].(string))
		require.NoError(t, err)
		require.True(t, field.want.Equal(at), "%s: %s vs %s", field.name, field.want, at)
	}
	require.Equal(t, 1, count(t, f.pool, `SELECT count(*) FROM event_log`))

	order, found, err := projections.GetOrder(ctx, f.pool, "o-1")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "paid", order.Status)
	require.Equal(t, e.ID, order.LastEventID)
	require.True(t, e.OccurredAt.Equal(order.OccurredAt))
	require.Equal(t, 1, count(t, f.pool, `SELECT count(*) FROM orders`))

	require.Equal(t, 1, count(t, f.pool, countOutboxEvents))
	var destination string
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT payload->>'destination_topic' FROM outbox`).Scan(&destination))
	require.Equal(t, eventstore.LogTopic, destination)

	require.Len(t, f.segments(t), 1)
	require.Equal(t, f.segments(t)[0], rec.Archive.Segment)
	archived := f.archived(t, e.ID)
	require.Equal(t, e.ID, archived.ID)
	require.Equal(t, e.IdempotencyKey, archived.IdempotencyKey)
	require.Equal(t, "o-1", archived.OrderID)
	require.Equal(t, "corr-1", archived.CorrelationID)
	require.JSONEq(t, string(e.Payload), string(archived.Payload))
	require.True(t, e.ReceivedAt.Equal(archived.ReceivedAt))
	require.True(t, e.OccurredAt.Equal(*archived.OccurredAt))
}

func TestProcessor_EventOfAnotherSourceIsLoggedWithoutAnOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	e := newEvent(t, "clicks", `{"x":1}`)

	outcome, err := f.proc.Process(t.Context(), e)
	require.NoError(t, err)
	require.Equal(t, ingest.OutcomeCompleted, outcome)
	require.Equal(t, ingest.StatusCompleted, f.record(t, e.ID).Status)
	require.Equal(t, 1, logRows(t, f.pool, e.ID))
	require.Zero(t, count(t, f.pool, `SELECT count(*) FROM orders`))
	require.Equal(t, e.ID, f.archived(t, e.ID).ID)
	require.Len(t, f.segments(t), 1)
}

func TestProcessor_SameEventAgainIsSkippedAndLoggedOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	e := orderEvent(t, "o-1", "paid", time.Now())
	_, err := f.proc.Process(t.Context(), e)
	require.NoError(t, err)

	outcome, err := f.proc.Process(t.Context(), e)
	require.NoError(t, err)
	require.Equal(t, ingest.OutcomeSkipped, outcome)
	require.Equal(t, 1, logRows(t, f.pool, e.ID))
	require.Equal(t, 1, count(t, f.pool, countOutboxEvents))
	rec := f.record(t, e.ID)
	require.Equal(t, ingest.StatusCompleted, rec.Status)
	require.Equal(t, 1, rec.Attempts)
}

func TestProcessor_OtherEventWithTheSameKeyIsADuplicate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	original := orderEvent(t, "o-1", "paid", time.Now())
	_, err := f.proc.Process(t.Context(), original)
	require.NoError(t, err)

	again := orderEvent(t, "o-1", "refunded", time.Now())
	again.IdempotencyKey = original.IdempotencyKey
	outcome, err := f.proc.Process(t.Context(), again)
	require.NoError(t, err)
	require.Equal(t, ingest.OutcomeDuplicate, outcome)

	require.Equal(t, 1, count(t, f.pool, `SELECT count(*) FROM event_log`))
	require.Zero(t, logRows(t, f.pool, again.ID))
	order, _, err := projections.GetOrder(t.Context(), f.pool, "o-1")
	require.NoError(t, err)
	require.Equal(t, "paid", order.Status)
	require.Len(t, f.segments(t), 1, "the original's segment alone")
}

func TestProcessor_RuleViolationFailsPermanentlyAtOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)

	for name, tc := range map[string]struct {
		event   func() ingest.Event
		lastErr string
	}{
		"order update without order_id": {
			func() ingest.Event { e := orderEvent(t, "o-1", "paid", time.Now()); e.OrderID = ""; return e },
			"order_updates event needs order_id: event breaks a processing rule",
		},
		"order update without payload.status": {
			func() ingest.Event {
				e := orderEvent(t, "o-1", "paid", time.Now())
				e.Payload = json.RawMessage(`{"amount":"1.00"}`)
				return e
			},
			"order_updates event needs payload.status, a string of 1 to 50 characters: event breaks a processing rule",
		},
		"order update with a numeric payload.status": {
			func() ingest.Event {
				e := orderEvent(t, "o-1", "paid", time.Now())
				e.Payload = json.RawMessage(`{"status":7}`)
				return e
			},
			"order_updates event needs payload.status, a string of 1 to 50 characters: event breaks a processing rule",
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := tc.event()
			outcome, err := f.proc.Process(t.Context(), e)
			require.Empty(t, outcome)
			require.True(t, ingest.IsPermanent(err), "%v", err)
			var perm *ingest.PermanentError
			require.ErrorAs(t, err, &perm)
			require.ErrorIs(t, err, ingest.ErrRule)
			require.EqualError(t, err, tc.lastErr)

			rec := f.record(t, e.ID)
			require.Equal(t, ingest.StatusFailed, rec.Status)
			require.Equal(t, 1, rec.Attempts)
			require.Equal(t, tc.lastErr, rec.LastError)
			require.Zero(t, logRows(t, f.pool, e.ID))
			require.Nil(t, rec.Archive)
		})
	}
	require.Zero(t, count(t, f.pool, `SELECT count(*) FROM event_log`))
	require.Zero(t, count(t, f.pool, `SELECT count(*) FROM orders`))
	require.Zero(t, count(t, f.pool, countOutboxEvents))
	require.Empty(t, f.segments(t), "nothing is archived of an event that breaks a rule")
}

// A worker killed after it failed an event, before the poison queue recorded
// the dead letter, leaves the message to be delivered again: that delivery
// must fail permanently too, or the FAILED event never reaches the dead-letter
// queue (the chaos runner's worker kills found this).
func TestProcessor_FailedEventDeliveredAgainFailsPermanentlyAgainWithoutAnAttempt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	e := orderEvent(t, "o-1", "paid", time.Now())
	e.OrderID = ""
	_, err := f.proc.Process(t.Context(), e)
	require.True(t, ingest.IsPermanent(err), "%v", err)

	outcome, err := f.proc.Process(t.Context(), e)
	require.Empty(t, outcome)
	require.True(t, ingest.IsPermanent(err), "%v", err)
	require.ErrorContains(t, err, "is already FAILED: order_updates event needs order_id")
	rec := f.record(t, e.ID)
	require.Equal(t, ingest.StatusFailed, rec.Status)
	require.Equal(t, 1, rec.Attempts, "no attempt is spent on it")
}

func TestProcessor_ArchiveFailureIsRetriedThenFailsOnTheLastAttempt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	e := orderEvent(t, "o-1", "paid", time.Now())
	f.breakArchive(t)

	for attempt := 1; attempt < maxAttempts; attempt++ {
		outcome, err := f.proc.Process(ctx, e)
		require.Empty(t, outcome)
		require.ErrorContains(t, err, "archive payload: ")
		require.False(t, ingest.IsPermanent(err), "attempt %d of %d may be retried", attempt, maxAttempts)

		rec := f.record(t, e.ID)
		require.Equal(t, ingest.StatusPending, rec.Status)
		require.Equal(t, attempt, rec.Attempts)
		require.Equal(t, err.Error(), rec.LastError)
	}

	outcome, err := f.proc.Process(ctx, e)
	require.Empty(t, outcome)
	require.True(t, ingest.IsPermanent(err), "the last attempt's failure is permanent: %v", err)
	require.ErrorContains(t, err, "archive payload: ")
	rec := f.record(t, e.ID)
	require.Equal(t, ingest.StatusFailed, rec.Status)
	require.Equal(t, maxAttempts, rec.Attempts)
	require.Equal(t, err.Error(), rec.LastError)

	require.Zero(t, count(t, f.pool, `SELECT count(*) FROM event_log`))
	require.Zero(t, count(t, f.pool, `SELECT count(*) FROM orders`))
	require.Zero(t, count(t, f.pool, countOutboxEvents))

	// Once the archive is back, a replay processes it from attempt 1.
	f.fixArchive(t)
	_, err = f.store.Requeue(ctx, e.ID)
	require.NoError(t, err)
	outcome, err = f.proc.Process(ctx, e)
	require.NoError(t, err)
	require.Equal(t, ingest.OutcomeCompleted, outcome)
	rec = f.record(t, e.ID)
	require.Equal(t, ingest.StatusCompleted, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.Equal(t, 1, rec.Replays)
	require.Equal(t, 1, logRows(t, f.pool, e.ID))
}

func TestProcessor_RetryAfterAFailedAttemptCompletes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	e := newEvent(t, "clicks", `{}`)
	f.breakArchive(t)
	_, err := f.proc.Process(t.Context(), e)
	require.Error(t, err)

	f.fixArchive(t)
	outcome, err := f.proc.Process(t.Context(), e)
	require.NoError(t, err)
	require.Equal(t, ingest.OutcomeCompleted, outcome)
	rec := f.record(t, e.ID)
	require.Equal(t, ingest.StatusCompleted, rec.Status)
	require.Equal(t, 2, rec.Attempts)
	require.Empty(t, rec.LastError)
	require.Equal(t, 1, logRows(t, f.pool, e.ID))
}

func TestProcessor_ClaimBeyondMaxAttemptsFailsPermanentlyAtOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	e := orderEvent(t, "o-1", "paid", time.Now())

	// Attempts that died without finishing, each put back to PENDING.
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		outcome, _, err := f.store.Claim(ctx, e)
		require.NoError(t, err)
		require.Equal(t, ingest.Claimed, outcome)
		ok, err := f.store.Retry(ctx, ingest.FinishAttemptParams{ID: e.ID, Attempts: attempt, Error: "worker died"})
		require.NoError(t, err)
		require.True(t, ok)
	}

	outcome, err := f.proc.Process(ctx, e)
	require.Empty(t, outcome)
	require.True(t, ingest.IsPermanent(err), "%v", err)
	want := "event " + e.ID.String() + ": attempt 4 exceeds the limit of 3"
	require.EqualError(t, err, want)
	rec := f.record(t, e.ID)
	require.Equal(t, ingest.StatusFailed, rec.Status)
	require.Equal(t, maxAttempts+1, rec.Attempts)
	require.Equal(t, want, rec.LastError)
	require.Zero(t, logRows(t, f.pool, e.ID))
	require.Empty(t, f.segments(t), "nothing of the attempt ran")
}

func TestProcessor_FiftyConcurrentProcessesOfOneEventCompleteItOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	e := orderEvent(t, "o-1", "paid", time.Now())

	const workers = 50
	outcomes := make([]ingest.Outcome, workers)
	errs := make([]error, workers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			<-start
			outcomes[i], errs[i] = f.proc.Process(t.Context(), e)
		})
	}
	close(start)
	wg.Wait()

	completed := 0
	for i := range workers {
		require.NoError(t, errs[i])
		if outcomes[i] == ingest.OutcomeCompleted {
			completed++
		} else {
			require.Equal(t, ingest.OutcomeSkipped, outcomes[i])
		}
	}
	require.Equal(t, 1, completed)
	rec := f.record(t, e.ID)
	require.Equal(t, ingest.StatusCompleted, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.Equal(t, 1, count(t, f.pool, `SELECT count(*) FROM event_log`))
	require.Equal(t, 1, count(t, f.pool, `SELECT count(*) FROM orders`))
	require.Equal(t, 1, count(t, f.pool, countOutboxEvents))
}

func TestProcessor_LateOlderOrderUpdateDoesNotOverwriteANewerOne(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	newer := orderEvent(t, "o-1", "shipped", at.Add(time.Hour))
	older := orderEvent(t, "o-1", "paid", at)

	for _, e := range []ingest.Event{newer, older} {
		outcome, err := f.proc.Process(ctx, e)
		require.NoError(t, err)
		require.Equal(t, ingest.OutcomeCompleted, outcome, "a late update is still processed and logged")
	}

	order, found, err := projections.GetOrder(ctx, f.pool, "o-1")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "shipped", order.Status)
	require.Equal(t, newer.ID, order.LastEventID)
	require.True(t, newer.OccurredAt.Equal(order.OccurredAt))
	require.Equal(t, 2, count(t, f.pool, `SELECT count(*) FROM event_log`))
}

func TestProcessor_OrderUpdateWithoutOccurredAtIsOrderedByReceivedAt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	e := orderEvent(t, "o-1", "paid", time.Now())
	e.OccurredAt = nil

	_, err := f.proc.Process(t.Context(), e)
	require.NoError(t, err)
	order, _, err := projections.GetOrder(t.Context(), f.pool, "o-1")
	require.NoError(t, err)
	require.True(t, e.ReceivedAt.Equal(order.OccurredAt))
}

// The rescuer put the event back to PENDING while this attempt was still
// running: the attempt's commit matches no row and rolls back everything.
func TestProcessor_AttemptRescuedWhileRunningCommitsNothingAndIsSkipped(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	e := orderEvent(t, "o-1", "paid", time.Now())
	late := f.processor(t, hookArchive{Store: f.archive, before: func() error {
		_, err := f.store.Requeue(ctx, e.ID)
		return err
	}}, maxAttempts)

	outcome, err := late.Process(ctx, e)
	require.NoError(t, err)
	require.Equal(t, ingest.OutcomeSkipped, outcome)
	require.Equal(t, rowState{ingest.StatusPending, 1, 0}, stateOf(t, f.pool, e.ID))
	require.Zero(t, count(t, f.pool, `SELECT count(*) FROM event_log`))
	require.Zero(t, count(t, f.pool, `SELECT count(*) FROM orders`))
	require.Zero(t, count(t, f.pool, countOutboxEvents))

	outcome, err = f.proc.Process(ctx, e)
	require.NoError(t, err)
	require.Equal(t, ingest.OutcomeCompleted, outcome)
	require.Equal(t, rowState{ingest.StatusCompleted, 2, 0}, stateOf(t, f.pool, e.ID))
	require.Equal(t, 1, logRows(t, f.pool, e.ID))
}

// While this attempt ran, the event was rescued and another worker's attempt
// completed it: this attempt adds nothing and is not an error.
func TestProcessor_AttemptOvertakenByAnotherThatCompletedIsSkipped(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	e := orderEvent(t, "o-1", "paid", time.Now())
	late := f.processor(t, hookArchive{Store: f.archive, before: func() error {
		if _, err := f.store.Requeue(ctx, e.ID); err != nil {
			return err
		}
		outcome, err := f.proc.Process(ctx, e)
		if err != nil {
			return err
		}
		if outcome != ingest.OutcomeCompleted {
			return errors.New("the other attempt did not complete: " + string(outcome))
		}
		return nil
	}}, maxAttempts)

	outcome, err := late.Process(ctx, e)
	require.NoError(t, err)
	require.Equal(t, ingest.OutcomeSkipped, outcome)
	require.Equal(t, rowState{ingest.StatusCompleted, 2, 0}, stateOf(t, f.pool, e.ID))
	require.Equal(t, 1, logRows(t, f.pool, e.ID))
	require.Equal(t, 1, count(t, f.pool, countOutboxEvents))
}

// A last attempt that fails after the event was taken from it must not report
// a permanent failure: the event is not FAILED, and a permanent error would
// send it to the dead-letter queue.
func TestProcessor_LastAttemptThatLostTheEventIsNotPermanent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	e := orderEvent(t, "o-1", "paid", time.Now())
	late := f.processor(t, hookArchive{Store: f.archive, before: func() error {
		if _, err := f.store.Requeue(ctx, e.ID); err != nil {
			return err
		}
		return errors.New("disk full")
	}}, 1)

	outcome, err := late.Process(ctx, e)
	require.False(t, ingest.IsPermanent(err), "%v", err)
	require.NoError(t, err)
	require.Equal(t, ingest.OutcomeSkipped, outcome)
	rec := f.record(t, e.ID)
	require.Equal(t, ingest.StatusPending, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.Empty(t, rec.LastError)
}

func TestNewProcessor_RequiresAPositiveMaxAttempts(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, -1} {
		_, err := ingest.NewProcessor(nil, nil, nil, ingest.ProcessorConfig{MaxAttempts: n})
		require.EqualError(t, err, "processor: MaxAttempts must be positive")
	}
}

func TestReadArchived_SaysWhyAnEventHasNoRecordToReadBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	processing := rowIn(t, f.pool, ingest.StatusProcessing)
	completedBefore := rowIn(t, f.pool, ingest.StatusCompleted) // completed without a pointer, as before segments

	_, err := ingest.ReadArchived(ctx, f.archive, f.record(t, processing))
	require.ErrorIs(t, err, ingest.ErrNotArchived)
	require.EqualError(t, err, "event "+processing.String()+" is PROCESSING: its payload is archived once it is COMPLETED: event has no segment pointer")

	_, err = ingest.ReadArchived(ctx, f.archive, f.record(t, completedBefore))
	require.ErrorIs(t, err, ingest.ErrNotArchived)
	require.EqualError(t, err, "event "+completedBefore.String()+" was completed before payloads were archived in segments: event has no segment pointer")
}

// Never other bytes than those archived: a segment overwritten with other
// bytes, or gone, is an error, not a payload.
func TestReadArchived_RefusesACorruptedOrMissingSegment(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	a, b := newEvent(t, "clicks", `{"n":1}`), newEvent(t, "clicks", `{"n":2}`)
	for _, r := range f.proc.ProcessBatch(ctx, []ingest.Event{a, b}) {
		require.Equal(t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, r)
	}
	rec := f.record(t, a.ID)
	key := rec.Archive.Segment

	// Another segment's bytes under this key: same shape, other records.
	other := archive.NewSegmentWriter(key)
	for _, e := range []ingest.Event{b, a} {
		line, err := f.record(t, e.ID).Encode()
		require.NoError(t, err)
		_, err = other.Append(line)
		require.NoError(t, err)
	}
	body, err := other.Close()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(f.archive.Path(key), body, 0o600))
	_, err = ingest.ReadArchived(ctx, f.archive, rec)
	require.ErrorIs(t, err, archive.ErrCorrupt)

	// A record that hashes right but is another event's is refused too.
	_, err = ingest.DecodeArchived(a.ID, mustEncode(t, f.record(t, b.ID)))
	require.ErrorIs(t, err, archive.ErrCorrupt)
	require.ErrorContains(t, err, "the archived record is event "+b.ID.String())

	require.NoError(t, os.Remove(f.archive.Path(key)))
	_, err = ingest.ReadArchived(ctx, f.archive, rec)
	require.ErrorIs(t, err, archive.ErrNotFound)
	require.ErrorContains(t, err, "event "+a.ID.String()+": archive "+key)
}

func mustEncode(t *testing.T, rec ingest.Record) []byte {
	t.Helper()
	b, err := rec.Encode()
	require.NoError(t, err)
	return b
}

// BenchmarkSegment_LoadtestEvents archives records shaped like the load
// tool's events (order_updates, a status and an amount) in segments of the
// batch sizes the worker sees, and reports the bytes each event costs.
func BenchmarkSegment_LoadtestEvents(b *testing.B) {
	statuses := []string{"created", "paid", "shipped", "delivered"}
	for _, size := range []int{66, 256, 500} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			lines := make([][]byte, size)
			var raw int
			for i := range lines {
				id := uuid.Must(uuid.NewV7())
				at := time.Now().UTC()
				e := ingest.Event{
					ID: id, IdempotencyKey: uuid.NewString(), Source: logevent.SourceOrderUpdates, Type: "order.updated",
					OrderID: uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "order-%d", i%1000)).String(),
					Payload: json.RawMessage(`{"amount": "12.34", "status": "` + statuses[i%4] + `"}`), OccurredAt: &at, ReceivedAt: at,
					CorrelationID: uuid.NewString(), APIKeyID: "k7q2m9x4p1z8",
				}
				line, err := e.Encode()
				require.NoError(b, err)
				lines[i], raw = line, raw+len(line)
			}
			var compressed int
			for b.Loop() {
				w := archive.NewSegmentWriter("segments/2026/01/02/x.ndjson.gz")
				for _, l := range lines {
					if _, err := w.Append(l); err != nil {
						b.Fatal(err)
					}
				}
				body, err := w.Close()
				if err != nil {
					b.Fatal(err)
				}
				compressed = len(body)
			}
			b.ReportMetric(float64(raw)/float64(size), "line-bytes/event")
			b.ReportMetric(float64(compressed)/float64(size), "segment-bytes/event")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/event")
		})
	}
}
