package projections

import (
	"context"
	"errors"
	"fmt"
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
	if u.OrderID == "" || u.Status == "" || u.OccurredAt.IsZero() || u.EventID == uuid.Nil {
		return false, errors.New("apply order update: order id, status, time and event id are required")
	}
	tag, err := tx.Exec(ctx, `INSERT INTO orders (order_id, status, occurred_at, last_event_id)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (order_id) DO UPDATE
			SET status = EXCLUDED.status, occurred_at = EXCLUDED.occurred_at,
			    last_event_id = EXCLUDED.last_event_id, updated_at = now()
			WHERE (orders.occurred_at, orders.last_event_id) < (EXCLUDED.occurred_at, EXCLUDED.last_event_id)`,
		u.OrderID, u.Status, u.OccurredAt, u.EventID)
	if err != nil {
		return false, fmt.Errorf("apply order update %s: %w", u.OrderID, err)
	}
	return tag.RowsAffected() == 1, nil
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
