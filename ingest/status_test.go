package ingest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/testdb"
)

var allStatuses = []ingest.Status{ingest.StatusPending, ingest.StatusProcessing, ingest.StatusCompleted, ingest.StatusFailed}

func TestStateMachineTrigger_RefusesIllegalTransitions(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)

	for _, tc := range []struct {
		name string
		from ingest.Status
		set  string
	}{
		{"PENDING to COMPLETED", ingest.StatusPending, `status = 'COMPLETED'`},
		{"PENDING to FAILED", ingest.StatusPending, `status = 'FAILED'`},
		{"PENDING to PROCESSING without an attempt", ingest.StatusPending, `status = 'PROCESSING'`},
		{"PENDING to PROCESSING with two attempts", ingest.StatusPending, `status = 'PROCESSING', attempts = attempts + 2`},
		{"PENDING to PENDING with another attempt count", ingest.StatusPending, `attempts = attempts + 1`},
		{"PROCESSING to PROCESSING", ingest.StatusProcessing, `status = 'PROCESSING'`},
		{"PROCESSING to PROCESSING with an attempt", ingest.StatusProcessing, `attempts = attempts + 1`},
		{"PROCESSING to COMPLETED changing attempts", ingest.StatusProcessing, `status = 'COMPLETED', attempts = 0`},
		{"PROCESSING to PENDING changing attempts", ingest.StatusProcessing, `status = 'PENDING', attempts = 0`},
		{"COMPLETED to PENDING", ingest.StatusCompleted, `status = 'PENDING'`},
		{"COMPLETED to FAILED", ingest.StatusCompleted, `status = 'FAILED'`},
		{"COMPLETED to PROCESSING", ingest.StatusCompleted, `status = 'PROCESSING', attempts = attempts + 1`},
		{"COMPLETED to COMPLETED", ingest.StatusCompleted, `last_error = 'touched'`},
		{"FAILED to PENDING keeping attempts", ingest.StatusFailed, `status = 'PENDING', replays = replays + 1`},
		{"FAILED to PROCESSING", ingest.StatusFailed, `status = 'PROCESSING', attempts = attempts + 1`},
		{"FAILED to COMPLETED", ingest.StatusFailed, `status = 'COMPLETED'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := rowIn(t, pool, tc.from)
			before := stateOf(t, pool, id)

			_, err := pool.Exec(t.Context(), `UPDATE ingestion_events SET `+tc.set+` WHERE id = $1`, id)
			requireStateMachineRefusal(t, err)
			require.Equal(t, before, stateOf(t, pool, id))
		})
	}
}

func TestStateMachineTrigger_RefusesInsertsNotPendingAndChangesToTheEvent(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()

	for name, sql := range map[string]string{
		"status COMPLETED": `INSERT INTO ingestion_events (id, idempotency_key, source, type, payload, received_at, status)
			VALUES (gen_random_uuid(), 'k1', 's', 't', '{}', now(), 'COMPLETED')`,
		"attempts 1": `INSERT INTO ingestion_events (id, idempotency_key, source, type, payload, received_at, attempts)
			VALUES (gen_random_uuid(), 'k2', 's', 't', '{}', now(), 1)`,
		"replays 1": `INSERT INTO ingestion_events (id, idempotency_key, source, type, payload, received_at, replays)
			VALUES (gen_random_uuid(), 'k3', 's', 't', '{}', now(), 1)`,
	} {
		t.Run("insert with "+name, func(t *testing.T) {
			_, err := pool.Exec(ctx, sql)
			pgErr := pgError(t, err)
			require.Equal(t, "23514", pgErr.Code, pgErr.Message)
			require.Contains(t, pgErr.Message, "must start PENDING with 0 attempts")
		})
	}
	require.Zero(t, count(t, pool, `SELECT count(*) FROM ingestion_events`))

	for _, status := range allStatuses {
		t.Run("delete "+string(status), func(t *testing.T) {
			id := rowIn(t, pool, status)
			_, err := pool.Exec(ctx, `DELETE FROM ingestion_events WHERE id = $1`, id)
			pgErr := pgError(t, err)
			require.Equal(t, "42501", pgErr.Code, pgErr.Message) // insufficient_privilege
			require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM ingestion_events WHERE id = $1`, id))
		})
	}

	for name, set := range map[string]string{
		"payload":         `payload = '{"n":2}'`,
		"idempotency key": `idempotency_key = 'other'`,
		"source":          `source = 'other'`,
		"type":            `type = 'other'`,
		"received_at":     `received_at = received_at - interval '1 day'`,
		"id":              `id = gen_random_uuid()`,
	} {
		for _, status := range []ingest.Status{ingest.StatusPending, ingest.StatusProcessing} {
			t.Run(fmt.Sprintf("change %s while %s", name, status), func(t *testing.T) {
				id := rowIn(t, pool, status)
				_, err := pool.Exec(ctx, `UPDATE ingestion_events SET `+set+` WHERE id = $1`, id)
				pgErr := pgError(t, err)
				require.Equal(t, "23514", pgErr.Code, pgErr.Message)
				require.Contains(t, pgErr.Message, "is immutable apart from its state")
			})
		}
	}

	for _, from := range []ingest.Status{ingest.StatusProcessing, ingest.StatusCompleted} {
		t.Run("replay of "+string(from), func(t *testing.T) {
			id := rowIn(t, pool, from)
			_, err := pool.Exec(ctx, `UPDATE ingestion_events SET status = 'PENDING', attempts = 0, replays = replays + 1 WHERE id = $1`, id)
			pgErr := pgError(t, err)
			require.Equal(t, "23514", pgErr.Code, pgErr.Message)
			require.Contains(t, pgErr.Message, "replays change only on replay")
			require.Equal(t, rowState{from, 1, 0}, stateOf(t, pool, id))
		})
	}
}

func TestStateMachineTrigger_AllowsTheLegalTransitionsAndStampsUpdatedAt(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)

	for _, tc := range []struct {
		name string
		from ingest.Status
		set  string
		want rowState
	}{
		{"PENDING to PROCESSING, one more attempt", ingest.StatusPending, `status = 'PROCESSING', attempts = attempts + 1`, rowState{ingest.StatusProcessing, 1, 0}},
		{"PENDING to PENDING (rescue)", ingest.StatusPending, `status = 'PENDING'`, rowState{ingest.StatusPending, 0, 0}},
		{"PROCESSING to COMPLETED", ingest.StatusProcessing, `status = 'COMPLETED'`, rowState{ingest.StatusCompleted, 1, 0}},
		{"PROCESSING to FAILED", ingest.StatusProcessing, `status = 'FAILED', last_error = 'boom'`, rowState{ingest.StatusFailed, 1, 0}},
		{"PROCESSING to PENDING (retry)", ingest.StatusProcessing, `status = 'PENDING', last_error = 'boom'`, rowState{ingest.StatusPending, 1, 0}},
		{"FAILED to PENDING (replay)", ingest.StatusFailed, `status = 'PENDING', attempts = 0, replays = replays + 1`, rowState{ingest.StatusPending, 0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := rowIn(t, pool, tc.from)
			var before, after pgTimes
			before.read(t, pool, id)

			mustExec(t, pool, `UPDATE ingestion_events SET `+tc.set+` WHERE id = $1`, id)
			require.Equal(t, tc.want, stateOf(t, pool, id))
			after.read(t, pool, id)
			require.True(t, after.after(before), "the trigger sets updated_at on every change")
			require.Equal(t, before.created, after.created)
		})
	}
}

type pgTimes struct{ created, updated string }

// read keeps the timestamps as Postgres prints them, to the microsecond.
func (p *pgTimes) read(t *testing.T, pool *pgxpool.Pool, id any) {
	t.Helper()
	require.NoError(t, pool.QueryRow(t.Context(),
		`SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
		FROM ingestion_events WHERE id = $1`, id).Scan(&p.created, &p.updated))
}

func (p pgTimes) after(q pgTimes) bool { return p.updated > q.updated }

// CanTransition is the Go copy of the trigger: for every pair of states, it
// must give the trigger's answer. The trigger's answer is found by trying the
// move on a row in the from state, with each way the attempts and replays
// counters can sensibly change; any accepted variant makes the move legal.
func TestCanTransition_AgreesWithTheTriggerOnAllSixteenPairs(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	variants := []string{
		`attempts = attempts`,
		`attempts = attempts + 1`,
		`attempts = 0, replays = replays + 1`,
	}

	for _, from := range allStatuses {
		id := rowIn(t, pool, from)
		for _, to := range allStatuses {
			dbAllows := false
			for _, v := range variants {
				err := tryInRolledBackTx(t.Context(), pool, `UPDATE ingestion_events SET status = $2, `+v+` WHERE id = $1`, id, string(to))
				if err == nil {
					dbAllows = true
					continue
				}
				requireStateMachineRefusalOrReplaysRule(t, err)
			}
			require.Equal(t, dbAllows, ingest.CanTransition(from, to), "%s -> %s: trigger allows = %t", from, to, dbAllows)
		}
		require.Equal(t, from, stateOf(t, pool, id).Status, "every try was rolled back")
	}

	// The expected table, spelled out, so that a change to both copies shows.
	legal := map[[2]ingest.Status]bool{
		{ingest.StatusPending, ingest.StatusProcessing}:   true,
		{ingest.StatusPending, ingest.StatusPending}:      true,
		{ingest.StatusProcessing, ingest.StatusCompleted}: true,
		{ingest.StatusProcessing, ingest.StatusFailed}:    true,
		{ingest.StatusProcessing, ingest.StatusPending}:   true,
		{ingest.StatusFailed, ingest.StatusPending}:       true,
	}
	for _, from := range allStatuses {
		for _, to := range allStatuses {
			require.Equal(t, legal[[2]ingest.Status{from, to}], ingest.CanTransition(from, to), "%s -> %s", from, to)
		}
	}
}

func requireStateMachineRefusalOrReplaysRule(t *testing.T, err error) {
	t.Helper()
	pgErr := pgError(t, err)
	require.Equal(t, "23514", pgErr.Code, pgErr.Message)
	if pgErr.ConstraintName == "" {
		require.Contains(t, pgErr.Message, "replays change only on replay")
		return
	}
	require.Equal(t, "ingestion_events_state_machine", pgErr.ConstraintName)
}

func tryInRolledBackTx(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	tag, err := tx.Exec(ctx, sql, args...)
	if err == nil && tag.RowsAffected() != 1 {
		return fmt.Errorf("%d rows updated", tag.RowsAffected())
	}
	return err
}

func TestStatus_ValidKnowsTheFourStates(t *testing.T) {
	t.Parallel()
	for _, s := range allStatuses {
		require.True(t, s.Valid(), s)
	}
	for _, s := range []ingest.Status{"", "pending", "DONE", "RETRY"} {
		require.False(t, s.Valid(), s)
	}
}
