package handlers

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/internal/periodic"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/transport"
)

// gauges reads what the dashboards show first: messages waiting in the work
// queue, the dead-letter depth and the outbox backlog.
type gauges struct {
	periodic.Loop
	pool    *pgxpool.Pool
	work    transport.Work
	dead    *deadletter.Store
	metrics *observability.Metrics
	logger  *slog.Logger
}

func newGauges(pool *pgxpool.Pool, work transport.Work, dead *deadletter.Store, interval time.Duration, metrics *observability.Metrics, logger *slog.Logger) *gauges {
	g := &gauges{pool: pool, work: work, dead: dead, metrics: metrics, logger: logger}
	g.Loop = periodic.Loop{Interval: interval, Immediate: true, Fn: g.runOnce}
	return g
}

// runOnce reads each gauge once. The DLQ depth is the table's unreplayed
// letters plus what waits in the wire's own DLQ to be moved there.
func (g *gauges) runOnce(ctx context.Context) {
	if n, err := g.work.Depth(ctx); err == nil {
		g.metrics.QueueDepth.WithLabelValues(transport.EventsTopic).Set(float64(n))
	} else if ctx.Err() == nil {
		g.logger.Warn("read work queue depth", "error", err)
	}
	if waiting, err := g.dead.Waiting(ctx); err == nil {
		if redrivable, err := g.work.Redrivable(ctx); err == nil {
			g.metrics.DLQDepth.Set(float64(waiting + redrivable))
		}
	}
	if n, err := eventstore.Backlog(ctx, g.pool); err == nil {
		g.metrics.OutboxBacklog.Set(float64(n))
	}
}
