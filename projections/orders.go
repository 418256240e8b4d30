package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// OrderUpdate is the part of an order_updates event the projection keeps.
type OrderUpdate struct {
	OrderID    string
	Status     string
	OccurredAt time.Time
	EventID    uuid.UUID
}

// Order is a row of the orders projection.
type Order struct {
	OrderID     string
	Status      string
	OccurredAt  time.Time
	LastEventID uuid.UUID
}

// ApplyOrderUpdateTx records u as the order's status unless the projection
// already holds a newer update: (occurred_at, event id) orders updates, so an
// older update arriving late never overwrites a newer one and the result does
// not depend on arrival order. applied reports whether u won.
func ApplyOrderUpdateTx(ctx context.Context, tx pgx.Tx, u OrderUpdate) (applied bool, err error) {
	n, err := ApplyOrderUpdatesTx(ctx, tx, []OrderUpdate{u})
	return n == 1, err
}

// ApplyOrderUpdatesTx applies many updates in one statement, with the same
// rule as ApplyOrderUpdateTx. Updates of one order are first reduced to the
// newest, which is what applying them one by one would leave. It returns how
// many orders changed.
func ApplyOrderUpdatesTx(ctx context.Context, tx pgx.Tx, updates []OrderUpdate) (int, error) {
	newest := make(map[string]OrderUpdate, len(updates))
	for _, u := range updates {
		if u.OrderID == "" || u.Status == "" || u.OccurredAt.IsZero() || u.EventID == uuid.Nil {
			return 0, errors.New("apply order update: order id, status, time and event id are required")
		}
		if cur, ok := newest[u.OrderID]; !ok || newer(u, cur) {
			newest[u.OrderID] = u
		}
	}
	ids := make([]string, 0, len(newest))
	for id := range newest {
		ids = append(ids, id)
	}
	slices.Sort(ids) // rows are locked in one order by every writer: no deadlock between batches
	statuses, times, events := make([]string, len(ids)), make([]time.Time, len(ids)), make([]uuid.UUID, len(ids))
	for i, id := range ids {
		statuses[i], times[i], events[i] = newest[id].Status, newest[id].OccurredAt, newest[id].EventID
	}
	tag, err := tx.Exec(ctx, `INSERT INTO orders (order_id, status, occurred_at, last_event_id)
		SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::uuid[]) ORDER BY 1
		ON CONFLICT (order_id) DO UPDATE
			SET status = EXCLUDED.status, occurred_at = EXCLUDED.occurred_at,
			    last_event_id = EXCLUDED.last_event_id, updated_at = now()
			WHERE (orders.occurred_at, orders.last_event_id) < (EXCLUDED.occurred_at, EXCLUDED.last_event_id)`,
		ids, statuses, times, events)
	if err != nil {
		return 0, fmt.Errorf("apply %d order updates: %w", len(ids), err)
	}
	return int(tag.RowsAffected()), nil
}

// newer orders updates by (occurred_at, event id), as the SQL does: at the
// microsecond precision pgx stores (it truncates).
func newer(a, b OrderUpdate) bool {
	at, bt := a.OccurredAt.Truncate(time.Microsecond), b.OccurredAt.Truncate(time.Microsecond)
	if !at.Equal(bt) {
		return at.After(bt)
	}
	return bytes.Compare(a.EventID[:], b.EventID[:]) > 0
}

// GetOrder reads one order.
func GetOrder(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, orderID string) (Order, bool, error) {
	var o Order
	err := q.QueryRow(ctx, `SELECT order_id, status, occurred_at, last_event_id FROM orders WHERE order_id = $1`, orderID).
		Scan(&o.OrderID, &o.Status, &o.OccurredAt, &o.LastEventID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Order{}, false, nil
	}
	if err != nil {
		return Order{}, false, fmt.Errorf("get order %s: %w", orderID, err)
	}
	return o, true, nil
}
