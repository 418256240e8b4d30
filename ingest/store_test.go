package ingest_test

import (
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/testdb"
)

func TestClaim_NewEventIsStoredAndClaimedForItsFirstAttempt(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	e := orderEvent(t, "o-1", "paid", time.Now().Add(-time.Minute))
	e.CorrelationID = "corr-1"
	e.APIKeyID = "key1"

	outcome, rec, err := store.Claim(t.Context(), e)
	require.NoError(t, err)
	require.Equal(t, ingest.Claimed, outcome)
	require.Equal(t, ingest.StatusProcessing, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.Equal(t, 0, rec.Replays)
	require.Empty(t, rec.LastError)
	require.Equal(t, e.ID, rec.ID)
	require.Equal(t, e.IdempotencyKey, rec.IdempotencyKey)
	require.Equal(t, e.Source, rec.Source)
	require.Equal(t, e.Type, rec.Type)
	require.Equal(t, "o-1", rec.OrderID)
	require.Equal(t, "corr-1", rec.CorrelationID)
	require.Equal(t, "key1", rec.APIKeyID)
	require.JSONEq(t, string(e.Payload), string(rec.Payload))
	require.NotNil(t, rec.OccurredAt)
	require.True(t, e.OccurredAt.Equal(*rec.OccurredAt))
	require.True(t, e.ReceivedAt.Equal(rec.ReceivedAt))

	got, err := store.Get(t.Context(), e.ID)
	require.NoError(t, err)
	require.Equal(t, rec.Status, got.Status)
	require.Equal(t, rec.Attempts, got.Attempts)
}

func TestClaim_EventWithoutOptionalFieldsStoresThemAsAbsent(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	e := newEvent(t, "clicks", `{"x":1}`)

	_, rec, err := store.Claim(t.Context(), e)
	require.NoError(t, err)
	require.Empty(t, rec.OrderID)
	require.Nil(t, rec.OccurredAt)
	require.Empty(t, rec.CorrelationID)
	require.Empty(t, rec.APIKeyID)
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM ingestion_events
		WHERE id = $1 AND order_id IS NULL AND correlation_id IS NULL AND occurred_at IS NULL AND api_key_id IS NULL`, e.ID))
}

func TestClaim_SameEventAgainIsNotClaimable(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	e := newEvent(t, "clicks", `{"x":1}`)
	_, _, err := store.Claim(t.Context(), e)
	require.NoError(t, err)

	outcome, rec, err := store.Claim(t.Context(), e)
	require.NoError(t, err)
	require.Equal(t, ingest.NotClaimable, outcome)
	require.Equal(t, e.ID, rec.ID)
	require.Equal(t, ingest.StatusProcessing, rec.Status)
	require.Equal(t, 1, rec.Attempts, "an attempt that is refused does not count")
}

func TestClaim_CompletedOrFailedEventIsNotClaimable(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)

	done := newEvent(t, "clicks", `{}`)
	_, _, err := store.Claim(t.Context(), done)
	require.NoError(t, err)
	require.True(t, completeTx(t, pool, store, ingest.FinishAttemptParams{ID: done.ID, Attempts: 1}))

	failed := newEvent(t, "clicks", `{}`)
	_, _, err = store.Claim(t.Context(), failed)
	require.NoError(t, err)
	ok, err := store.Fail(t.Context(), ingest.FinishAttemptParams{ID: failed.ID, Attempts: 1, Error: "bad"})
	require.NoError(t, err)
	require.True(t, ok)

	for want, e := range map[ingest.Status]ingest.Event{ingest.StatusCompleted: done, ingest.StatusFailed: failed} {
		outcome, rec, err := store.Claim(t.Context(), e)
		require.NoError(t, err)
		require.Equal(t, ingest.NotClaimable, outcome)
		require.Equal(t, want, rec.Status)
		require.Equal(t, 1, rec.Attempts)
	}
}

func TestClaim_OtherEventWithTheSameKeyIsADuplicateOfTheOriginal(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	original := newEvent(t, "clicks", `{"x":1}`)
	_, _, err := store.Claim(t.Context(), original)
	require.NoError(t, err)

	again := newEvent(t, "clicks", `{"x":2}`)
	again.IdempotencyKey = original.IdempotencyKey
	outcome, rec, err := store.Claim(t.Context(), again)
	require.NoError(t, err)
	require.Equal(t, ingest.Duplicate, outcome)
	require.Equal(t, original.ID, rec.ID)
	require.JSONEq(t, `{"x":1}`, string(rec.Payload))
	require.Equal(t, ingest.StatusProcessing, rec.Status)
	require.Equal(t, 1, rec.Attempts)

	_, err = store.Get(t.Context(), again.ID)
	require.ErrorIs(t, err, ingest.ErrNotFound)
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM ingestion_events`))
}

// The first claim of a new event races on both unique indexes (id and key);
// the race is rare, so several events are tried.
func TestClaim_FiftyConcurrentClaimsOfOneEventClaimItOnce(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)

	for range 5 {
		e := newEvent(t, "clicks", `{"x":1}`)
		const claimers = 50
		outcomes := make([]ingest.ClaimOutcome, claimers)
		errs := make([]error, claimers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range claimers {
			wg.Go(func() {
				<-start
				outcomes[i], _, errs[i] = store.Claim(t.Context(), e)
			})
		}
		close(start)
		wg.Wait()

		claimed := 0
		for i := range claimers {
			require.NoError(t, errs[i])
			if outcomes[i] == ingest.Claimed {
				claimed++
			} else {
				require.Equal(t, ingest.NotClaimable, outcomes[i])
			}
		}
		require.Equal(t, 1, claimed)
		require.Equal(t, rowState{ingest.StatusProcessing, 1, 0}, stateOf(t, pool, e.ID))
	}
}

func TestClaim_IDStoredUnderAnotherKeyIsAnError(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	e := newEvent(t, "clicks", `{}`)
	_, _, err := store.Claim(t.Context(), e)
	require.NoError(t, err)

	other := e
	other.IdempotencyKey = "another-key"
	_, _, err = store.Claim(t.Context(), other)
	require.EqualError(t, err, "claim event "+e.ID.String()+": its id is stored under another idempotency key")
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM ingestion_events`))
	require.Equal(t, rowState{ingest.StatusProcessing, 1, 0}, stateOf(t, pool, e.ID))
}

func TestClaim_RetriedEventIsClaimedForItsNextAttempt(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	e := newEvent(t, "clicks", `{}`)
	_, _, err := store.Claim(t.Context(), e)
	require.NoError(t, err)
	ok, err := store.Retry(t.Context(), ingest.FinishAttemptParams{ID: e.ID, Attempts: 1, Error: "timeout"})
	require.NoError(t, err)
	require.True(t, ok)

	outcome, rec, err := store.Claim(t.Context(), e)
	require.NoError(t, err)
	require.Equal(t, ingest.Claimed, outcome)
	require.Equal(t, 2, rec.Attempts)
	require.Equal(t, "timeout", rec.LastError, "the last error stays until the attempt ends")
}

func TestFinishAttempt_StaleAttemptNumberChangesNothing(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	ctx := t.Context()
	e := newEvent(t, "clicks", `{}`)
	_, claimed, err := store.Claim(ctx, e)
	require.NoError(t, err)

	for _, stale := range []int{0, 2} {
		p := ingest.FinishAttemptParams{ID: e.ID, Attempts: stale, Error: "late"}
		ok, err := store.Retry(ctx, p)
		require.NoError(t, err)
		require.False(t, ok, "Retry with attempt %d", stale)
		ok, err = store.Fail(ctx, p)
		require.NoError(t, err)
		require.False(t, ok, "Fail with attempt %d", stale)
		require.False(t, completeTx(t, pool, store, p), "CompleteTx with attempt %d", stale)
	}
	ok, err := store.Retry(ctx, ingest.FinishAttemptParams{ID: uuid.New(), Attempts: 1})
	require.NoError(t, err)
	require.False(t, ok, "unknown event")

	now, err := store.Get(ctx, e.ID)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusProcessing, now.Status)
	require.Equal(t, 1, now.Attempts)
	require.Empty(t, now.LastError)
	require.True(t, claimed.UpdatedAt.Equal(now.UpdatedAt), "the row was not written")
}

func TestFinishAttempt_OnlyTheCurrentAttemptEndsIt(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	ctx := t.Context()
	e := newEvent(t, "clicks", `{}`)
	_, _, err := store.Claim(ctx, e)
	require.NoError(t, err)

	ok, err := store.Retry(ctx, ingest.FinishAttemptParams{ID: e.ID, Attempts: 1, Error: "boom"})
	require.NoError(t, err)
	require.True(t, ok)
	rec, err := store.Get(ctx, e.ID)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusPending, rec.Status)
	require.Equal(t, "boom", rec.LastError)

	// Attempt 1 is over: it can neither complete nor fail the event now.
	require.False(t, completeTx(t, pool, store, ingest.FinishAttemptParams{ID: e.ID, Attempts: 1}))
	ok, err = store.Fail(ctx, ingest.FinishAttemptParams{ID: e.ID, Attempts: 1, Error: "late"})
	require.NoError(t, err)
	require.False(t, ok)

	_, _, err = store.Claim(ctx, e)
	require.NoError(t, err)
	require.False(t, completeTx(t, pool, store, ingest.FinishAttemptParams{ID: e.ID, Attempts: 1}))
	require.True(t, completeTx(t, pool, store, ingest.FinishAttemptParams{ID: e.ID, Attempts: 2}))
	rec, err = store.Get(ctx, e.ID)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusCompleted, rec.Status)
	require.Equal(t, 2, rec.Attempts)
	require.Empty(t, rec.LastError, "completion clears the last error")

	// A COMPLETED event never changes.
	for _, p := range []ingest.FinishAttemptParams{{ID: e.ID, Attempts: 2, Error: "x"}, {ID: e.ID, Attempts: 3, Error: "x"}} {
		ok, err = store.Fail(ctx, p)
		require.NoError(t, err)
		require.False(t, ok)
		ok, err = store.Retry(ctx, p)
		require.NoError(t, err)
		require.False(t, ok)
	}
	require.Equal(t, rowState{ingest.StatusCompleted, 2, 0}, stateOf(t, pool, e.ID))
}

func TestCompleteTx_RollsBackWithTheCallersTransaction(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	ctx := t.Context()
	e := newEvent(t, "clicks", `{}`)
	_, _, err := store.Claim(ctx, e)
	require.NoError(t, err)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	ok, err := store.CompleteTx(ctx, tx, ingest.FinishAttemptParams{ID: e.ID, Attempts: 1})
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, tx.Rollback(ctx))

	require.Equal(t, rowState{ingest.StatusProcessing, 1, 0}, stateOf(t, pool, e.ID))
}

func TestRequeue_FailedEventStartsOverAsAReplay(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	ctx := t.Context()
	e := newEvent(t, "clicks", `{}`)

	for replay := 1; replay <= 2; replay++ {
		_, claimed, err := store.Claim(ctx, e)
		require.NoError(t, err)
		require.Equal(t, 1, claimed.Attempts, "each replay starts again at attempt 1")
		ok, err := store.Fail(ctx, ingest.FinishAttemptParams{ID: e.ID, Attempts: 1, Error: "broken"})
		require.NoError(t, err)
		require.True(t, ok)

		rec, err := store.Requeue(ctx, e.ID)
		require.NoError(t, err)
		require.Equal(t, ingest.StatusPending, rec.Status)
		require.Equal(t, 0, rec.Attempts)
		require.Equal(t, replay, rec.Replays)
		require.Equal(t, "broken", rec.LastError, "the reason of the last failure stays for the operator")
	}
}

func TestRequeue_StuckEventKeepsItsAttempts(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	ctx := t.Context()

	processing := newEvent(t, "clicks", `{}`)
	_, _, err := store.Claim(ctx, processing)
	require.NoError(t, err)
	rec, err := store.Requeue(ctx, processing.ID)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusPending, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.Equal(t, 0, rec.Replays)

	pending := rowIn(t, pool, ingest.StatusPending)
	rec, err = store.Requeue(ctx, pending)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusPending, rec.Status)
	require.Equal(t, 0, rec.Attempts)
	require.Equal(t, 0, rec.Replays)
}

func TestRequeue_RefusesCompletedAndUnknownEvents(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	ctx := t.Context()

	done := rowIn(t, pool, ingest.StatusCompleted)
	_, err := store.Requeue(ctx, done)
	require.ErrorIs(t, err, ingest.ErrAlreadyCompleted)
	require.Equal(t, rowState{ingest.StatusCompleted, 1, 0}, stateOf(t, pool, done))

	_, err = store.Requeue(ctx, uuid.New())
	require.ErrorIs(t, err, ingest.ErrNotFound)
}

func TestRescueStuck_RequeuesOnlyOldPendingAndProcessingEvents(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	ctx := t.Context()

	processing := rowIn(t, pool, ingest.StatusProcessing)
	pending := rowIn(t, pool, ingest.StatusPending)
	completed := rowIn(t, pool, ingest.StatusCompleted)
	failed := rowIn(t, pool, ingest.StatusFailed)

	none, err := store.RescueStuck(ctx, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Empty(t, none, "nothing is an hour old")

	// An hour later, by the caller's clock.
	rescued, err := store.RescueStuck(ctx, time.Now().Add(time.Hour))
	require.NoError(t, err)
	got := map[uuid.UUID]rowState{}
	for _, r := range rescued {
		got[r.ID] = rowState{r.Status, r.Attempts, r.Replays}
	}
	require.Equal(t, map[uuid.UUID]rowState{
		processing: {ingest.StatusPending, 1, 0},
		pending:    {ingest.StatusPending, 0, 0},
	}, got)
	require.Equal(t, rowState{ingest.StatusPending, 1, 0}, stateOf(t, pool, processing))
	require.Equal(t, rowState{ingest.StatusCompleted, 1, 0}, stateOf(t, pool, completed))
	require.Equal(t, rowState{ingest.StatusFailed, 1, 0}, stateOf(t, pool, failed))

	again, err := store.RescueStuck(ctx, time.Now().Add(-time.Minute))
	require.NoError(t, err)
	require.Empty(t, again, "a rescue stamps updated_at, so the rescued rows are fresh again")
}

func TestList_PagesInArrivalOrderAndFiltersByStatus(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	ctx := t.Context()

	// Ids are UUIDv7, so they sort in creation order.
	ids := []uuid.UUID{
		rowIn(t, pool, ingest.StatusPending),
		rowIn(t, pool, ingest.StatusProcessing),
		rowIn(t, pool, ingest.StatusFailed),
		rowIn(t, pool, ingest.StatusProcessing),
		rowIn(t, pool, ingest.StatusCompleted),
	}
	idsOf := func(recs []ingest.Record) []uuid.UUID {
		out := []uuid.UUID{}
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return out
	}
	page := func(p ingest.ListParams) ([]uuid.UUID, bool) {
		recs, more, err := store.List(ctx, p)
		require.NoError(t, err)
		return idsOf(recs), more
	}

	got, more := page(ingest.ListParams{Limit: 2})
	require.Equal(t, ids[0:2], got)
	require.True(t, more)
	got, more = page(ingest.ListParams{Limit: 2, After: ids[1]})
	require.Equal(t, ids[2:4], got)
	require.True(t, more)
	got, more = page(ingest.ListParams{Limit: 2, After: ids[3]})
	require.Equal(t, ids[4:5], got)
	require.False(t, more)

	got, more = page(ingest.ListParams{Limit: 5})
	require.Equal(t, ids, got)
	require.False(t, more, "exactly a page full has nothing after it")
	got, more = page(ingest.ListParams{})
	require.Equal(t, ids, got, "no limit means the largest page")
	require.False(t, more)

	got, more = page(ingest.ListParams{Status: ingest.StatusProcessing, Limit: 1})
	require.Equal(t, []uuid.UUID{ids[1]}, got)
	require.True(t, more)
	got, more = page(ingest.ListParams{Status: ingest.StatusProcessing, Limit: 1, After: ids[1]})
	require.Equal(t, []uuid.UUID{ids[3]}, got)
	require.False(t, more)

	got, _ = page(ingest.ListParams{Status: ingest.StatusFailed})
	require.Equal(t, []uuid.UUID{ids[2]}, got)
	got, more = page(ingest.ListParams{After: ids[4]})
	require.Empty(t, got)
	require.False(t, more)
}

func TestGet_UnknownEventIsNotFound(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)

	_, err := store.Get(t.Context(), uuid.New())
	require.ErrorIs(t, err, ingest.ErrNotFound)
	_, err = store.GetByKey(t.Context(), "nobody")
	require.ErrorIs(t, err, ingest.ErrNotFound)
}

// pointerSQL sets a whole archive pointer in an UPDATE's SET list.
const pointerSQL = `archive_segment = 'segments/2026/01/02/x.ndjson.gz', archive_offset = 0, archive_length = 7,
	archive_sha256 = sha256('{"n":1}')`

// completeWithPointer completes a PROCESSING row the way the processor's
// commit does, pointer and status in one UPDATE.
func completeWithPointer(t *testing.T, store *ingest.Store, pool *pgxpool.Pool, id uuid.UUID, p archive.Pointer) {
	t.Helper()
	owned := false
	require.NoError(t, pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		got, err := store.OwnedTx(t.Context(), tx, []ingest.FinishAttemptParams{{ID: id, Attempts: 1}})
		if err != nil {
			return err
		}
		owned = got[0]
		return store.CompleteOwnedTx(t.Context(), tx, []ingest.ArchivedRef{{ID: id, Archive: p}})
	}))
	require.True(t, owned)
}

func TestCompleteOwnedTx_RecordsThePointerThatGetReturns(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	id := rowIn(t, pool, ingest.StatusProcessing)
	p := archive.Pointer{Segment: "segments/2026/01/02/a.ndjson.gz", Offset: 1 << 33, Length: 385, SHA256: sha256.Sum256([]byte("line"))}

	completeWithPointer(t, store, pool, id, p)

	rec, err := store.Get(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusCompleted, rec.Status)
	require.Equal(t, &p, rec.Archive)
	refs, more, err := store.ListArchived(t.Context(), ingest.ArchivedParams{})
	require.NoError(t, err)
	require.False(t, more)
	require.Equal(t, []ingest.ArchivedRef{{ID: id, Archive: p}}, refs)

	// A row completed without a pointer (as before segments) is not listed.
	completedBefore := rowIn(t, pool, ingest.StatusCompleted)
	rec, err = store.Get(t.Context(), completedBefore)
	require.NoError(t, err)
	require.Nil(t, rec.Archive)
	refs, _, err = store.ListArchived(t.Context(), ingest.ArchivedParams{})
	require.NoError(t, err)
	require.Len(t, refs, 1)
	n, err := store.CountUnarchived(t.Context(), time.Time{})
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	n, err = store.CountUnarchived(t.Context(), time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Zero(t, n, "none completed since an hour from now")
}

func TestCompleteOwnedTx_RefusesAPointerThatIsNotWhole(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	id := rowIn(t, pool, ingest.StatusProcessing)

	for name, p := range map[string]archive.Pointer{
		"no segment":      {Offset: 0, Length: 1},
		"negative offset": {Segment: "s", Offset: -1, Length: 1},
		"empty line":      {Segment: "s", Offset: 0, Length: 0},
	} {
		err := pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
			return store.CompleteOwnedTx(t.Context(), tx, []ingest.ArchivedRef{{ID: id, Archive: p}})
		})
		require.ErrorContains(t, err, "is not whole", name)
	}
	require.Equal(t, rowState{ingest.StatusProcessing, 1, 0}, stateOf(t, pool, id))
}

// The database holds the pointer's rules on its own: it is set only by the
// UPDATE that moves PROCESSING -> COMPLETED, whole, and never rewritten.
func TestArchivePointer_IsSetOnlyOnCompletionAndNeverRewritten(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := ingest.NewStore(pool)
	ctx := t.Context()
	requirePointerRefusal := func(t *testing.T, err error) {
		t.Helper()
		pgErr := pgError(t, err)
		require.Equal(t, "23514", pgErr.Code, pgErr.Message)
		require.Equal(t, "ingestion_events_archive_pointer", pgErr.ConstraintName, pgErr.Message)
	}

	t.Run("rewriting a COMPLETED row's pointer", func(t *testing.T) {
		id := rowIn(t, pool, ingest.StatusProcessing)
		p := archive.Pointer{Segment: "segments/2026/01/02/first.ndjson.gz", Offset: 10, Length: 7, SHA256: sha256.Sum256([]byte(`{"n":1}`))}
		completeWithPointer(t, store, pool, id, p)

		for name, set := range map[string]string{
			"segment": `archive_segment = 'segments/2026/01/02/other.ndjson.gz'`,
			"offset":  `archive_offset = 0`,
			"length":  `archive_length = 8`,
			"sha256":  `archive_sha256 = sha256('other')`,
			"all":     pointerSQL,
			"cleared": `archive_segment = NULL, archive_offset = NULL, archive_length = NULL, archive_sha256 = NULL`,
		} {
			_, err := pool.Exec(ctx, `UPDATE ingestion_events SET `+set+` WHERE id = $1`, id)
			requirePointerRefusal(t, err)
			rec, err := store.Get(ctx, id)
			require.NoError(t, err, name)
			require.Equal(t, &p, rec.Archive, name)
		}
	})

	t.Run("setting a pointer on any other transition", func(t *testing.T) {
		for name, tc := range map[string]struct {
			from ingest.Status
			set  string
		}{
			"while PENDING":         {ingest.StatusPending, pointerSQL},
			"on a claim":            {ingest.StatusPending, `status = 'PROCESSING', attempts = attempts + 1, ` + pointerSQL},
			"while PROCESSING":      {ingest.StatusProcessing, pointerSQL},
			"on a retry":            {ingest.StatusProcessing, `status = 'PENDING', ` + pointerSQL},
			"on a failure":          {ingest.StatusProcessing, `status = 'FAILED', ` + pointerSQL},
			"on a replay":           {ingest.StatusFailed, `status = 'PENDING', attempts = 0, replays = replays + 1, ` + pointerSQL},
			"after completing bare": {ingest.StatusCompleted, pointerSQL},
		} {
			id := rowIn(t, pool, tc.from)
			before := stateOf(t, pool, id)
			_, err := pool.Exec(ctx, `UPDATE ingestion_events SET `+tc.set+` WHERE id = $1`, id)
			requirePointerRefusal(t, err)
			require.Equal(t, before, stateOf(t, pool, id), name)
		}
	})

	t.Run("an insert with a pointer", func(t *testing.T) {
		_, err := pool.Exec(ctx, `INSERT INTO ingestion_events (id, idempotency_key, source, type, payload, received_at,
				archive_segment, archive_offset, archive_length, archive_sha256)
			VALUES (gen_random_uuid(), 'with-pointer', 's', 't', '{}', now(), 's', 0, 1, sha256('x'))`)
		requirePointerRefusal(t, err)
	})

	t.Run("a partial or malformed pointer on completion", func(t *testing.T) {
		for name, set := range map[string]string{
			"segment alone":   `archive_segment = 's'`,
			"no hash":         `archive_segment = 's', archive_offset = 0, archive_length = 1`,
			"short hash":      `archive_segment = 's', archive_offset = 0, archive_length = 1, archive_sha256 = '\x00'::bytea`,
			"negative offset": `archive_segment = 's', archive_offset = -1, archive_length = 1, archive_sha256 = sha256('x')`,
			"empty line":      `archive_segment = 's', archive_offset = 0, archive_length = 0, archive_sha256 = sha256('x')`,
			"empty segment":   `archive_segment = '', archive_offset = 0, archive_length = 1, archive_sha256 = sha256('x')`,
		} {
			id := rowIn(t, pool, ingest.StatusProcessing)
			_, err := pool.Exec(ctx, `UPDATE ingestion_events SET status = 'COMPLETED', `+set+` WHERE id = $1`, id)
			pgErr := pgError(t, err)
			require.Equal(t, "23514", pgErr.Code, name)
			require.Contains(t, []string{"ingestion_events_archive_pointer_whole", "ingestion_events_archive_pointer_valid"}, pgErr.ConstraintName, name)
			require.Equal(t, rowState{ingest.StatusProcessing, 1, 0}, stateOf(t, pool, id), name)
		}
	})
}
