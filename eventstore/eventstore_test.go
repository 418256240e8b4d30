package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/internal/testdb"
)

// appendCommitted appends in a transaction of its own and commits it, or
// rolls it back when the append fails.
func appendCommitted(t *testing.T, pool *pgxpool.Pool, streamID string, expected int64, events ...eventstore.NewEvent) ([]eventstore.Recorded, error) {
	t.Helper()
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	recorded, err := eventstore.AppendTx(ctx, tx, streamID, expected, events...)
	if err != nil {
		return nil, err
	}
	require.NoError(t, tx.Commit(ctx))
	return recorded, nil
}

func event(typ, data string) eventstore.NewEvent {
	return eventstore.NewEvent{Type: typ, Data: json.RawMessage(data)}
}

func count(t *testing.T, q eventstore.Querier, table string) int {
	t.Helper()
	var n int
	require.NoError(t, q.QueryRow(t.Context(), `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&n))
	return n
}

func versions(recs []eventstore.Recorded) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.Version
	}
	return out
}

func types(recs []eventstore.Recorded) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Type
	}
	return out
}

func requirePgCode(t *testing.T, err error, code string) *pgconn.PgError {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "want a Postgres error with SQLSTATE %s, got %v", code, err)
	require.Equal(t, code, pgErr.Code, pgErr.Message)
	return pgErr
}

func TestAppendTx_AssignsVersionsAfterTheExpectedVersion(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()

	first, err := appendCommitted(t, pool, "order-1", eventstore.ExpectNew,
		eventstore.NewEvent{Type: "order.placed", Data: json.RawMessage(`{"total":"10.00"}`), Metadata: map[string]string{"correlation_id": "c-1"}},
		event("order.paid", `{"paid":true}`))
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2}, versions(first))

	second, err := appendCommitted(t, pool, "order-1", 2,
		event("order.packed", `{}`), event("order.shipped", `{"carrier":"x"}`), event("order.delivered", `{}`))
	require.NoError(t, err)
	require.Equal(t, []int64{3, 4, 5}, versions(second))

	all := append(first, second...)
	for i, r := range all {
		require.Equal(t, "order-1", r.StreamID)
		require.NotZero(t, r.EventID)
		require.False(t, r.RecordedAt.IsZero())
		if i > 0 {
			require.Greater(t, r.Position, all[i-1].Position, "positions grow with every append")
		}
	}
	require.Equal(t, map[string]string{"correlation_id": "c-1"}, first[0].Metadata)
	require.Equal(t, map[string]string{}, first[1].Metadata, "nil metadata is stored as an empty object")

	stored, err := eventstore.ReadStream(ctx, pool, "order-1")
	require.NoError(t, err)
	require.Len(t, stored, 5)
	for i, r := range stored {
		require.Equal(t, all[i].Position, r.Position)
		require.Equal(t, all[i].EventID, r.EventID)
		require.Equal(t, all[i].Version, r.Version)
		require.Equal(t, all[i].Type, r.Type)
		require.JSONEq(t, string(all[i].Data), string(r.Data))
		require.Equal(t, all[i].Metadata, r.Metadata)
		require.True(t, all[i].RecordedAt.Equal(r.RecordedAt))
	}

	version, err := eventstore.StreamVersion(ctx, pool, "order-1")
	require.NoError(t, err)
	require.EqualValues(t, 5, version)
	version, err = eventstore.StreamVersion(ctx, pool, "order-unknown")
	require.NoError(t, err)
	require.EqualValues(t, 0, version)
}

func TestAppendTx_WithNoEventsWritesNothing(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)

	recorded, err := appendCommitted(t, pool, "s", eventstore.ExpectNew)
	require.NoError(t, err)
	require.Empty(t, recorded)
	require.Zero(t, count(t, pool, "event_log"))
	require.Zero(t, outboxEvents(t, pool))
}

func TestAppendTx_StaleExpectedVersionConflictsAndWritesNothing(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	_, err := appendCommitted(t, pool, "acct-1", eventstore.ExpectNew, event("opened", `{}`), event("credited", `{"amount":"5"}`))
	require.NoError(t, err)

	for _, expected := range []int64{eventstore.ExpectNew, 1} {
		t.Run(fmt.Sprintf("expected %d", expected), func(t *testing.T) {
			recorded, err := appendCommitted(t, pool, "acct-1", expected, event("debited", `{"amount":"1"}`), event("debited", `{"amount":"2"}`))
			require.ErrorIs(t, err, eventstore.ErrVersionConflict)
			require.Nil(t, recorded)
		})
	}

	require.Equal(t, 2, count(t, pool, "event_log"))
	require.Equal(t, 2, outboxEvents(t, pool))
	stored, err := eventstore.ReadStream(t.Context(), pool, "acct-1")
	require.NoError(t, err)
	require.Equal(t, []string{"opened", "credited"}, types(stored))
}

// An expected version beyond the stream's end is as wrong as a stale one:
// accepting it would leave a gap in the stream's versions.
func TestAppendTx_ExpectedVersionAheadOfTheStreamConflictsAndWritesNothing(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	_, err := appendCommitted(t, pool, "acct-1", eventstore.ExpectNew, event("opened", `{}`))
	require.NoError(t, err)

	_, err = appendCommitted(t, pool, "acct-1", 3, event("credited", `{}`))
	require.ErrorIs(t, err, eventstore.ErrVersionConflict)
	_, err = appendCommitted(t, pool, "acct-new", 1, event("credited", `{}`))
	require.ErrorIs(t, err, eventstore.ErrVersionConflict)

	require.Equal(t, 1, count(t, pool, "event_log"))
	require.Equal(t, 1, outboxEvents(t, pool))
	version, err := eventstore.StreamVersion(t.Context(), pool, "acct-1")
	require.NoError(t, err)
	require.EqualValues(t, 1, version)
}

func TestAppendTx_RefusesNegativeExpectedVersion(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)

	_, err := appendCommitted(t, pool, "s", -1, event("e", `{}`))
	require.Error(t, err)
	require.Zero(t, count(t, pool, "event_log"))
}

func TestAppendTx_TwoTransactionsAppendingVersionOneCommitExactlyOnce(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()

	first, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = first.Rollback(context.Background()) }()
	second, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = second.Rollback(context.Background()) }()

	_, err = eventstore.AppendTx(ctx, first, "cart-1", eventstore.ExpectNew, event("created", `{"by":"first"}`))
	require.NoError(t, err)

	// The second append blocks on the first's uncommitted version 1.
	secondPID := second.Conn().PgConn().PID()
	secondErr := make(chan error, 1)
	go func() {
		_, err := eventstore.AppendTx(ctx, second, "cart-1", eventstore.ExpectNew, event("created", `{"by":"second"}`))
		secondErr <- err
	}()
	require.Eventually(t, func() bool {
		var waiting string
		err := pool.QueryRow(ctx, `SELECT coalesce(wait_event_type, '') FROM pg_stat_activity WHERE pid = $1`, secondPID).Scan(&waiting)
		return err == nil && waiting == "Lock"
	}, 10*time.Second, 5*time.Millisecond, "second append never waited for the first")

	require.NoError(t, first.Commit(ctx))
	err = <-secondErr
	require.ErrorIs(t, err, eventstore.ErrVersionConflict)
	require.NoError(t, second.Rollback(ctx))

	stored, err := eventstore.ReadStream(ctx, pool, "cart-1")
	require.NoError(t, err)
	require.Len(t, stored, 1)
	require.JSONEq(t, `{"by":"first"}`, string(stored[0].Data))
	require.Equal(t, 1, outboxEvents(t, pool))
}

func TestAppendTx_ConcurrentAppendsAtOneVersionLetExactlyOneWin(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()
	_, err := appendCommitted(t, pool, "s", eventstore.ExpectNew, event("created", `{}`))
	require.NoError(t, err)

	const writers = 8
	errs := make(chan error, writers)
	start := make(chan struct{})
	for i := range writers {
		go func() {
			<-start
			errs <- pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				_, err := eventstore.AppendTx(ctx, tx, "s", 1, event("changed", fmt.Sprintf(`{"writer":%d}`, i)))
				return err
			})
		}()
	}
	close(start)
	won := 0
	for range writers {
		err := <-errs
		if err == nil {
			won++
			continue
		}
		require.ErrorIs(t, err, eventstore.ErrVersionConflict)
	}
	require.Equal(t, 1, won)
	require.Equal(t, 2, count(t, pool, "event_log"))
	require.Equal(t, 2, outboxEvents(t, pool))
}

func TestAppendTx_RefusesDataThatIsNotJSONAndWritesNothing(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()

	for name, data := range map[string]json.RawMessage{
		"truncated": json.RawMessage(`{"a":`),
		"bare word": json.RawMessage(`hello`),
		"empty":     nil,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := appendCommitted(t, pool, "s", eventstore.ExpectNew,
				event("ok", `{}`), eventstore.NewEvent{Type: "bad", Data: data})
			require.ErrorContains(t, err, "append bad: data is not valid JSON")
		})
	}
	require.Zero(t, count(t, pool, "event_log"))
	require.Zero(t, outboxEvents(t, pool))

	// The refusal happens before any SQL, so the transaction stays usable.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = eventstore.AppendTx(ctx, tx, "s", eventstore.ExpectNew, event("bad", `{`))
	require.Error(t, err)
	recorded, err := eventstore.AppendTx(ctx, tx, "s", eventstore.ExpectNew, event("ok", `{}`))
	require.NoError(t, err)
	require.Equal(t, []int64{1}, versions(recorded))
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 1, count(t, pool, "event_log"))
}

func TestAppendTx_RolledBackTransactionLeavesNoEventAndNoOutboxRow(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = eventstore.AppendTx(ctx, tx, "s", eventstore.ExpectNew, event("a", `{}`), event("b", `{}`))
	require.NoError(t, err)
	require.Equal(t, 2, count(t, tx, "event_log"))
	require.Equal(t, 2, outboxEvents(t, tx))
	require.NoError(t, tx.Rollback(ctx))

	require.Zero(t, count(t, pool, "event_log"))
	require.Zero(t, outboxEvents(t, pool))
}

func TestEventLog_RefusesUpdateDeleteAndTruncate(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()
	recorded, err := appendCommitted(t, pool, "s", eventstore.ExpectNew, event("created", `{"n":1}`))
	require.NoError(t, err)

	for name, sql := range map[string]string{
		"update":   `UPDATE event_log SET data = '{"n":2}'`,
		"delete":   `DELETE FROM event_log`,
		"truncate": `TRUNCATE event_log`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := pool.Exec(ctx, sql)
			pgErr := requirePgCode(t, err, "42501") // insufficient_privilege
			require.Contains(t, pgErr.Message, "is refused: the table is append-only")
		})
	}

	stored, err := eventstore.ReadStream(ctx, pool, "s")
	require.NoError(t, err)
	require.Len(t, stored, 1)
	require.Equal(t, recorded[0].EventID, stored[0].EventID)
	require.JSONEq(t, `{"n":1}`, string(stored[0].Data))
}

func TestReadStream_ReturnsOnlyThatStreamInVersionOrder(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()
	_, err := appendCommitted(t, pool, "a", eventstore.ExpectNew, event("a1", `{}`))
	require.NoError(t, err)
	_, err = appendCommitted(t, pool, "b", eventstore.ExpectNew, event("b1", `{}`))
	require.NoError(t, err)
	_, err = appendCommitted(t, pool, "a", 1, event("a2", `{}`), event("a3", `{}`))
	require.NoError(t, err)

	a, err := eventstore.ReadStream(ctx, pool, "a")
	require.NoError(t, err)
	require.Equal(t, []string{"a1", "a2", "a3"}, types(a))
	require.Equal(t, []int64{1, 2, 3}, versions(a))

	none, err := eventstore.ReadStream(ctx, pool, "c")
	require.NoError(t, err)
	require.Empty(t, none)
}

func TestRead_PagesThroughTheLogInPositionOrder(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()
	// Log order: x1(a) y1(b) x2(a) y2(b) x3(c)
	for _, step := range []struct {
		stream   string
		expected int64
		typ      string
	}{{"x", 0, "a"}, {"y", 0, "b"}, {"x", 1, "a"}, {"y", 1, "b"}, {"x", 2, "c"}} {
		_, err := appendCommitted(t, pool, step.stream, step.expected, event(step.typ, `{}`))
		require.NoError(t, err)
	}

	var pages [][]string
	var after int64
	for range 10 {
		page, err := eventstore.Read(ctx, pool, eventstore.ReadParams{AfterPosition: after, Limit: 2})
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		var names []string
		for _, r := range page {
			require.Greater(t, r.Position, after)
			after = r.Position
			names = append(names, fmt.Sprintf("%s%d:%s", r.StreamID, r.Version, r.Type))
		}
		pages = append(pages, names)
	}
	require.Equal(t, [][]string{{"x1:a", "y1:b"}, {"x2:a", "y2:b"}, {"x3:c"}}, pages)

	all, err := eventstore.Read(ctx, pool, eventstore.ReadParams{})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "a", "b", "c"}, types(all), "a limit of 0 reads up to the page maximum")
	emptyTypes, err := eventstore.Read(ctx, pool, eventstore.ReadParams{Types: []string{}})
	require.NoError(t, err)
	require.Equal(t, types(all), types(emptyTypes), "an empty types filter selects every type")

	onlyB, err := eventstore.Read(ctx, pool, eventstore.ReadParams{Types: []string{"b"}})
	require.NoError(t, err)
	require.Equal(t, []string{"y", "y"}, []string{onlyB[0].StreamID, onlyB[1].StreamID})
	require.Equal(t, []int64{1, 2}, versions(onlyB))

	aOrC, err := eventstore.Read(ctx, pool, eventstore.ReadParams{Types: []string{"c", "a"}, AfterPosition: all[0].Position, Limit: 1})
	require.NoError(t, err)
	require.Len(t, aOrC, 1)
	require.Equal(t, all[2].EventID, aOrC[0].EventID)

	unknown, err := eventstore.Read(ctx, pool, eventstore.ReadParams{Types: []string{"zzz"}})
	require.NoError(t, err)
	require.Empty(t, unknown)

	past, err := eventstore.Read(ctx, pool, eventstore.ReadParams{AfterPosition: all[4].Position})
	require.NoError(t, err)
	require.Empty(t, past)
}
