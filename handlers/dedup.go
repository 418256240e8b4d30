package handlers

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/observability"
)

// dedup skips a message whose uuid was handled before: a redelivery after a
// lost acknowledgement (redisstream drops the ack of a message that finishes
// while its subscriber closes) costs one Redis read instead of a trip to
// Postgres. It records a uuid only after the handler succeeded: watermill's
// Deduplicator records it before, so a failed attempt's retry would be
// dropped. The database stays the real guard (idempotency key, attempt
// compare-and-set); when Redis cannot answer, dedup steps aside.
type dedup struct {
	client  redis.UniversalClient
	prefix  string
	ttl     time.Duration
	metrics *observability.Metrics
}

// dedupTimeout bounds dedup's Redis calls: it must never hold a message up.
const dedupTimeout = 500 * time.Millisecond

func (d dedup) key(uuid string) string { return d.prefix + "handled:" + uuid }

func (d dedup) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), dedupTimeout)
		seen, err := d.client.Exists(ctx, d.key(msg.UUID)).Result()
		cancel()
		if err == nil && seen == 1 {
			d.metrics.EventsProcessed.WithLabelValues("REDELIVERED").Inc()
			return nil, nil
		}
		out, err := h(msg)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), dedupTimeout)
			d.client.Set(ctx, d.key(msg.UUID), 1, d.ttl) // best effort, see above
			cancel()
		}
		return out, err
	}
}
