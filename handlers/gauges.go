package handlers

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/gate"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/queue"
)

// gauges reads what the dashboards show first: messages waiting in the
// queue, the dead-letter depth and the outbox backlog. On Redis Streams it
// also recreates consumer groups Redis lost.
type gauges struct {
	periodic
	pool    *pgxpool.Pool
	redis   redis.UniversalClient
	topics  queue.Topics
	sqs     *queue.SQS // nil on Redis Streams
	dead    *deadletter.Store
	metrics *observability.Metrics
	logger  *slog.Logger
	// subscribed reports that the consumers created their groups.
	subscribed func() bool
}

func (g *gauges) init(interval time.Duration) *gauges {
	g.periodic = periodic{interval: interval, immediate: true, fn: g.runOnce}
	return g
}

func (g *gauges) runOnce(ctx context.Context) {
	if g.sqs != nil {
		g.readSQS(ctx)
	} else {
		g.ensureGroups(ctx)
		if lag, pending, err := gate.StreamDepth(ctx, g.redis, g.topics.Events(), queue.ConsumerGroup); err == nil {
			g.metrics.QueueDepth.WithLabelValues(queue.EventsTopic).Set(float64(lag + pending))
		}
		if n, err := g.dead.Waiting(ctx); err == nil {
			g.metrics.DLQDepth.Set(float64(n))
		}
	}
	if n, err := eventstore.Backlog(ctx, g.pool); err == nil {
		g.metrics.OutboxBacklog.Set(float64(n))
	}
}

// readSQS reads the queue depths from SQS's approximate counts; the DLQ
// depth is the table's unreplayed letters plus what waits in SQS's DLQ to be
// moved there.
func (g *gauges) readSQS(ctx context.Context) {
	if n, err := g.sqs.Depth(ctx); err == nil {
		g.metrics.QueueDepth.WithLabelValues(queue.EventsTopic).Set(float64(n))
	} else if ctx.Err() == nil {
		g.logger.Warn("read sqs queue depth", "error", err)
	}
	waiting, err := g.dead.Waiting(ctx)
	if err != nil {
		return
	}
	redriven, err := g.sqs.DeadDepth(ctx)
	if err != nil {
		return
	}
	g.metrics.DLQDepth.Set(float64(waiting + redriven))
}

// ensureGroups recreates consumer groups Redis lost, so consumption resumes
// instead of every read failing with NOGROUP. What the stream held when Redis
// lost it is gone with it: Redis Streams needs persistence (AOF) to keep
// accepted events, which is why production uses SQS.
func (g *gauges) ensureGroups(ctx context.Context) {
	if !g.subscribed() {
		return // the subscribers create the groups when they start
	}
	for stream, group := range map[string]string{
		g.topics.Events():                   queue.ConsumerGroup,
		g.topics.Named(eventstore.LogTopic): queue.ProjectionsGroup,
	} {
		created, err := queue.EnsureGroup(ctx, g.redis, stream, group)
		if created {
			g.logger.Error("consumer group was missing: Redis lost its data (restart without persistence, flush or failover); recreated it", "stream", stream, "group", group)
		} else if err != nil && ctx.Err() == nil {
			g.logger.Warn("check consumer group", "stream", stream, "group", group, "error", err)
		}
	}
}
