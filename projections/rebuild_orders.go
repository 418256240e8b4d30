package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/logevent"
)

// orderUpdateOfLog decodes an order update from a processed event, by the
// writer's rule: an order's time is occurred_at, else received_at. ok is
// false for events of other sources.
func orderUpdateOfLog(e eventstore.Recorded) (u OrderUpdate, ok bool, err error) {
	var d logevent.EventProcessed
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return OrderUpdate{}, false, fmt.Errorf("decode event at position %d: %w", e.Position, err)
	}
	if d.Source != logevent.SourceOrderUpdates {
		return OrderUpdate{}, false, nil
	}
	var payload struct {
		Status any `json:"status"`
	}
	if err := json.Unmarshal(d.Payload, &payload); err != nil {
		return OrderUpdate{}, false, fmt.Errorf("decode order update payload at position %d: %w", e.Position, err)
	}
	status, _ := payload.Status.(string)
	at := d.ReceivedAt
	if d.OccurredAt != nil {
		at = *d.OccurredAt
	}
	// The writer refuses such an event, so the log cannot hold one.
	if d.OrderID == "" || status == "" || len(status) > logevent.OrderStatusLengthMax || at.IsZero() || d.EventID == uuid.Nil {
		return OrderUpdate{}, false, fmt.Errorf("order update at position %d lacks order id, status, time or event id", e.Position)
	}
	return OrderUpdate{OrderID: d.OrderID, Status: status, OccurredAt: at, EventID: d.EventID}, true, nil
}

// RebuildOrders rebuilds the orders projection from the log: it folds every
// order update into a fresh table, newest (occurred_at, event id) winning,
// verifies it, and corrects the live table to equal it in one transaction
// (see runRebuild). progress may be nil.
func RebuildOrders(ctx context.Context, pool *pgxpool.Pool, progress Progress) (RebuildReport, error) {
	return runRebuild(ctx, pool, rebuilder{
		name:   ProjectionOrders,
		live:   "orders",
		fresh:  "orders_rebuild",
		types:  []string{logevent.TypeEventProcessed},
		create: `CREATE TEMP TABLE orders_rebuild (LIKE orders INCLUDING DEFAULTS INCLUDING INDEXES)`,
		fold:   foldOrdersTx,
		verify: verifyOrdersTx,
		swap:   swapOrdersTx,
	}, progress)
}

func foldOrdersTx(ctx context.Context, tx pgx.Tx, page []eventstore.Recorded) error {
	newest := make(map[string]OrderUpdate, len(page))
	for _, e := range page {
		u, ok, err := orderUpdateOfLog(e)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if cur, seen := newest[u.OrderID]; !seen || newer(u, cur) {
			newest[u.OrderID] = u
		}
	}
	if len(newest) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(newest))
	statuses, times, events := make([]string, len(ids)), make([]time.Time, len(ids)), make([]uuid.UUID, len(ids))
	for i, id := range ids {
		statuses[i], times[i], events[i] = newest[id].Status, newest[id].OccurredAt, newest[id].EventID
	}
	// The same rule as ApplyOrderUpdatesTx, on the fresh table.
	_, err := tx.Exec(ctx, `INSERT INTO orders_rebuild (order_id, status, occurred_at, last_event_id)
		SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::uuid[])
		ON CONFLICT (order_id) DO UPDATE
			SET status = EXCLUDED.status, occurred_at = EXCLUDED.occurred_at, last_event_id = EXCLUDED.last_event_id
			WHERE (orders_rebuild.occurred_at, orders_rebuild.last_event_id) < (EXCLUDED.occurred_at, EXCLUDED.last_event_id)`,
		ids, statuses, times, events)
	if err != nil {
		return fmt.Errorf("fold %d order updates: %w", len(ids), err)
	}
	return nil
}

// verifyOrdersTx recomputes each order's winner from the log in SQL, apart
// from the Go fold, and requires the fresh table to hold exactly those: the
// same orders (the count of distinct order ids in the log) and, for each,
// the update with the greatest (occurred_at, event id). Times are cut to
// microseconds as pgx does when the writer stores them.
func verifyOrdersTx(ctx context.Context, tx pgx.Tx) error {
	return mismatches(ctx, tx, "orders_rebuild vs the log", `
		WITH updates AS (
			SELECT data->>'order_id' AS order_id, data->'payload'->>'status' AS status,
			       regexp_replace(coalesce(data->>'occurred_at', data->>'received_at'), '(\.[0-9]{6})[0-9]+', '\1')::timestamptz AS at,
			       (data->>'event_id')::uuid AS event_id
			FROM event_log WHERE event_type = $1 AND data->>'source' = $2
		), winners AS (
			SELECT DISTINCT ON (order_id) order_id, status, at, event_id FROM updates
			ORDER BY order_id, at DESC, event_id DESC
		)
		SELECT coalesce(w.order_id, r.order_id) FROM winners w FULL JOIN orders_rebuild r ON r.order_id = w.order_id
		WHERE (w.status, w.at, w.event_id) IS DISTINCT FROM (r.status, r.occurred_at, r.last_event_id)
		ORDER BY 1`, logevent.TypeEventProcessed, logevent.SourceOrderUpdates)
}

func swapOrdersTx(ctx context.Context, tx pgx.Tx) (int64, error) {
	var changed int64
	for _, q := range []string{
		`UPDATE orders o SET status = r.status, occurred_at = r.occurred_at, last_event_id = r.last_event_id, updated_at = now()
			FROM orders_rebuild r
			WHERE o.order_id = r.order_id
			  AND (o.status, o.occurred_at, o.last_event_id) IS DISTINCT FROM (r.status, r.occurred_at, r.last_event_id)`,
		`INSERT INTO orders (order_id, status, occurred_at, last_event_id)
			SELECT r.order_id, r.status, r.occurred_at, r.last_event_id FROM orders_rebuild r
			WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = r.order_id)`,
		`DELETE FROM orders o WHERE NOT EXISTS (SELECT 1 FROM orders_rebuild r WHERE r.order_id = o.order_id)`,
	} {
		tag, err := tx.Exec(ctx, q)
		if err != nil {
			return 0, err
		}
		changed += tag.RowsAffected()
	}
	return changed, nil
}
