package deadletter_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/internal/testdb"
)

func letter(t *testing.T, reason string) deadletter.Letter {
	t.Helper()
	eventID := uuid.New()
	return deadletter.Letter{
		MessageUUID: uuid.NewString(),
		EventID:     &eventID,
		Topic:       "daybook.events",
		Reason:      reason,
		Payload:     []byte(`{"id":"x"}`),
		Metadata:    map[string]string{"correlation_id": "c-1"},
	}
}

func ids(letters []deadletter.Letter) []uuid.UUID {
	out := []uuid.UUID{}
	for _, l := range letters {
		out = append(out, l.ID)
	}
	return out
}

func TestRecord_StoresTheLetterAndGetReadsItBack(t *testing.T) {
	t.Parallel()
	store := deadletter.NewStore(testdb.New(t))
	ctx := t.Context()
	in := letter(t, "attempt 5 failed: boom")
	before := time.Now()

	out, err := store.Record(ctx, in)
	require.NoError(t, err)
	require.NotEqual(t, uuid.Nil, out.ID)
	require.Equal(t, uuid.Version(7), out.ID.Version(), "ids are UUIDv7, so pages are in arrival order")
	require.Equal(t, in.MessageUUID, out.MessageUUID)
	require.Equal(t, *in.EventID, *out.EventID)
	require.Equal(t, "daybook.events", out.Topic)
	require.Equal(t, "attempt 5 failed: boom", out.Reason)
	require.Equal(t, []byte(`{"id":"x"}`), out.Payload)
	require.Equal(t, map[string]string{"correlation_id": "c-1"}, out.Metadata)
	require.WithinDuration(t, before, out.CreatedAt, time.Minute)
	require.Nil(t, out.ReplayedAt)
	require.Zero(t, out.ReplayCount)

	got, err := store.Get(ctx, out.ID)
	require.NoError(t, err)
	require.Equal(t, out, got)
}

func TestRecord_KeepsAnUndecodableMessageAsItCame(t *testing.T) {
	t.Parallel()
	store := deadletter.NewStore(testdb.New(t))
	ctx := t.Context()

	for name, payload := range map[string][]byte{
		"not UTF-8": {0xff, 0xfe, 0x00, 'x'},
		"empty":     {},
		"nil":       nil,
	} {
		t.Run(name, func(t *testing.T) {
			out, err := store.Record(ctx, deadletter.Letter{MessageUUID: uuid.NewString(), Topic: "daybook.events", Reason: "cannot decode", Payload: payload})
			require.NoError(t, err)
			require.Nil(t, out.EventID)
			require.Equal(t, map[string]string{}, out.Metadata)
			require.Equal(t, len(payload), len(out.Payload))
			if len(payload) > 0 {
				require.Equal(t, payload, out.Payload)
			}
		})
	}
}

func TestRecord_IsIdempotentByMessageUUID(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	store := deadletter.NewStore(pool)
	ctx := t.Context()
	in := letter(t, "first reason")

	first, err := store.Record(ctx, in)
	require.NoError(t, err)
	again := in
	again.Reason = "second reason"
	second, err := store.Record(ctx, again)
	require.NoError(t, err)

	require.Equal(t, first.ID, second.ID)
	require.Equal(t, first.CreatedAt, second.CreatedAt)
	require.Equal(t, "second reason", second.Reason, "the latest reason is kept")
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM dead_letters`).Scan(&n))
	require.Equal(t, 1, n)
	waiting, err := store.Waiting(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, waiting)
}

func TestRecord_KeepsAGivenID(t *testing.T) {
	t.Parallel()
	store := deadletter.NewStore(testdb.New(t))
	in := letter(t, "r")
	in.ID = uuid.MustParse("01900000-0000-7000-8000-000000000042")

	out, err := store.Record(t.Context(), in)
	require.NoError(t, err)
	require.Equal(t, in.ID, out.ID)
}

func TestList_PagesWaitingOrAllLettersOldestFirst(t *testing.T) {
	t.Parallel()
	store := deadletter.NewStore(testdb.New(t))
	ctx := t.Context()
	var all []uuid.UUID
	for range 5 {
		l, err := store.Record(ctx, letter(t, "r"))
		require.NoError(t, err)
		all = append(all, l.ID)
	}
	require.NoError(t, store.MarkReplayed(ctx, all[1]))
	require.NoError(t, store.MarkReplayed(ctx, all[3]))

	page := func(p deadletter.ListParams) ([]uuid.UUID, bool) {
		letters, more, err := store.List(ctx, p)
		require.NoError(t, err)
		return ids(letters), more
	}

	got, more := page(deadletter.ListParams{Limit: 2})
	require.Equal(t, all[0:2], got)
	require.True(t, more)
	got, more = page(deadletter.ListParams{Limit: 2, After: all[1]})
	require.Equal(t, all[2:4], got)
	require.True(t, more)
	got, more = page(deadletter.ListParams{Limit: 2, After: all[3]})
	require.Equal(t, all[4:], got)
	require.False(t, more)
	got, more = page(deadletter.ListParams{})
	require.Equal(t, all, got)
	require.False(t, more)

	got, more = page(deadletter.ListParams{Waiting: true, Limit: 2})
	require.Equal(t, []uuid.UUID{all[0], all[2]}, got)
	require.True(t, more)
	got, more = page(deadletter.ListParams{Waiting: true, Limit: 2, After: all[2]})
	require.Equal(t, []uuid.UUID{all[4]}, got)
	require.False(t, more)
	got, more = page(deadletter.ListParams{Waiting: true, Limit: 3})
	require.Equal(t, []uuid.UUID{all[0], all[2], all[4]}, got)
	require.False(t, more, "exactly a page full has nothing after it")
}

func TestMarkReplayed_StampsTheLetterAndCountsEachReplay(t *testing.T) {
	t.Parallel()
	store := deadletter.NewStore(testdb.New(t))
	ctx := t.Context()
	l, err := store.Record(ctx, letter(t, "r"))
	require.NoError(t, err)
	other, err := store.Record(ctx, letter(t, "r"))
	require.NoError(t, err)

	require.NoError(t, store.MarkReplayed(ctx, l.ID))
	got, err := store.Get(ctx, l.ID)
	require.NoError(t, err)
	require.NotNil(t, got.ReplayedAt)
	require.False(t, got.ReplayedAt.Before(got.CreatedAt))
	require.Equal(t, 1, got.ReplayCount)

	require.NoError(t, store.MarkReplayed(ctx, l.ID))
	got, err = store.Get(ctx, l.ID)
	require.NoError(t, err)
	require.Equal(t, 2, got.ReplayCount)

	untouched, err := store.Get(ctx, other.ID)
	require.NoError(t, err)
	require.Nil(t, untouched.ReplayedAt)
	require.Zero(t, untouched.ReplayCount)

	require.ErrorIs(t, store.MarkReplayed(ctx, uuid.New()), deadletter.ErrNotFound)
}

func TestWaiting_CountsLettersNotYetReplayed(t *testing.T) {
	t.Parallel()
	store := deadletter.NewStore(testdb.New(t))
	ctx := t.Context()
	waiting := func() int64 {
		n, err := store.Waiting(ctx)
		require.NoError(t, err)
		return n
	}

	require.Zero(t, waiting())
	var letters []deadletter.Letter
	for range 3 {
		l, err := store.Record(ctx, letter(t, "r"))
		require.NoError(t, err)
		letters = append(letters, l)
	}
	require.EqualValues(t, 3, waiting())
	require.NoError(t, store.MarkReplayed(ctx, letters[0].ID))
	require.EqualValues(t, 2, waiting())
	require.NoError(t, store.MarkReplayed(ctx, letters[0].ID))
	require.EqualValues(t, 2, waiting(), "a second replay of one letter counts once")
}

func TestGet_UnknownLetterIsNotFound(t *testing.T) {
	t.Parallel()
	store := deadletter.NewStore(testdb.New(t))

	_, err := store.Get(t.Context(), uuid.New())
	require.ErrorIs(t, err, deadletter.ErrNotFound)
}

func TestLatestForEvent_ReturnsTheNewestLetterOfTheEvent(t *testing.T) {
	t.Parallel()
	store := deadletter.NewStore(testdb.New(t))
	ctx := t.Context()
	first := letter(t, "first death")
	_, err := store.Record(ctx, first)
	require.NoError(t, err)
	second := letter(t, "second death")
	second.EventID = first.EventID
	recorded, err := store.Record(ctx, second)
	require.NoError(t, err)
	_, err = store.Record(ctx, letter(t, "another event"))
	require.NoError(t, err)

	got, err := store.LatestForEvent(ctx, *first.EventID)
	require.NoError(t, err)
	require.Equal(t, recorded.ID, got.ID)
	require.Equal(t, "second death", got.Reason)

	_, err = store.LatestForEvent(ctx, uuid.New())
	require.ErrorIs(t, err, deadletter.ErrNotFound)
}
