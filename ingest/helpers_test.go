package ingest_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/logevent"
)

// newEvent is a valid event of source with its own id and key. Times are cut
// to microseconds, the precision Postgres keeps.
func newEvent(t *testing.T, source, payload string) ingest.Event {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return ingest.Event{
		ID:             id,
		IdempotencyKey: "key-" + id.String(),
		Source:         source,
		Type:           "test.happened",
		Payload:        json.RawMessage(payload),
		ReceivedAt:     time.Now().UTC().Truncate(time.Microsecond),
	}
}

// orderEvent is an order_updates event setting orderID to status at occurredAt.
func orderEvent(t *testing.T, orderID, status string, occurredAt time.Time) ingest.Event {
	t.Helper()
	e := newEvent(t, logevent.SourceOrderUpdates, `{"status":"`+status+`","amount":"12.30"}`)
	e.Type = "order.updated"
	e.OrderID = orderID
	at := occurredAt.UTC().Truncate(time.Microsecond)
	e.OccurredAt = &at
	return e
}

// insertPending inserts a PENDING row with raw SQL, as the trigger allows.
func insertPending(t *testing.T, pool *pgxpool.Pool) uuid.UUID {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	_, err = pool.Exec(t.Context(), `INSERT INTO ingestion_events (id, idempotency_key, source, type, payload, received_at)
		VALUES ($1, $2, 'tests', 'raw', '{"n":1}', now())`, id, "raw-"+id.String())
	require.NoError(t, err)
	return id
}

// rowIn returns a fresh row brought to status by legal transitions only:
// PROCESSING has 1 attempt, so do COMPLETED and FAILED.
func rowIn(t *testing.T, pool *pgxpool.Pool, status ingest.Status) uuid.UUID {
	t.Helper()
	id := insertPending(t, pool)
	if status == ingest.StatusPending {
		return id
	}
	mustExec(t, pool, `UPDATE ingestion_events SET status = 'PROCESSING', attempts = attempts + 1 WHERE id = $1`, id)
	if status == ingest.StatusProcessing {
		return id
	}
	mustExec(t, pool, `UPDATE ingestion_events SET status = $2 WHERE id = $1`, id, string(status))
	return id
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	tag, err := pool.Exec(t.Context(), sql, args...)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected(), sql)
}

func pgError(t *testing.T, err error) *pgconn.PgError {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "want a Postgres error, got %v", err)
	return pgErr
}

// requireStateMachineRefusal checks that err is the trigger's refusal of a transition.
func requireStateMachineRefusal(t *testing.T, err error) {
	t.Helper()
	pgErr := pgError(t, err)
	require.Equal(t, "23514", pgErr.Code, pgErr.Message) // check_violation
	require.Equal(t, "ingestion_events_state_machine", pgErr.ConstraintName, pgErr.Message)
}

type rowState struct {
	Status   ingest.Status
	Attempts int
	Replays  int
}

func stateOf(t *testing.T, pool *pgxpool.Pool, id uuid.UUID) rowState {
	t.Helper()
	var s rowState
	var status string
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT status, attempts, replays FROM ingestion_events WHERE id = $1`, id).
		Scan(&status, &s.Attempts, &s.Replays))
	s.Status = ingest.Status(status)
	return s
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), sql, args...).Scan(&n))
	return n
}

// countOutboxEvents counts the events the outbox's log messages carry: each
// row is watermill's forwarder envelope, its base64 payload the events.
const countOutboxEvents = `SELECT count(*) FROM outbox o,
	json_array_elements(convert_from(decode(o.payload->>'payload', 'base64'), 'UTF8')::json -> 'events')`

func logRows(t *testing.T, pool *pgxpool.Pool, id uuid.UUID) int {
	t.Helper()
	return count(t, pool, `SELECT count(*) FROM event_log WHERE stream_id = $1`, "ingest-"+id.String())
}

// completeTx runs CompleteTx in a transaction of its own and commits it.
func completeTx(t *testing.T, pool *pgxpool.Pool, store *ingest.Store, p ingest.FinishAttemptParams) bool {
	t.Helper()
	var ok bool
	require.NoError(t, pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		var err error
		ok, err = store.CompleteTx(t.Context(), tx, p)
		return err
	}))
	return ok
}
