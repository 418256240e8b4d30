package handlers

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/internal/batcher"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/transport"
)

// dedup skips a message whose uuid was handled before: a redelivery after a
// lost acknowledgement costs one Redis read instead of a trip to Postgres.
// It records a uuid only after the handler succeeded: watermill's
// Deduplicator records it before, so a failed attempt's retry would be
// dropped. The database stays the real guard (idempotency key, attempt
// compare-and-set); when Redis cannot answer, dedup steps aside.
//
// A first delivery (transport.FirstDelivery) is neither checked nor
// recorded: it cannot have been handled before, and the row its handling
// writes in Postgres is what catches its redelivery. Redeliveries are
// checked and recorded, so a message that keeps coming back skips Postgres.
//
// The messages handled at the same time share their round trips: the checks
// and records waiting are sent as one pipeline.
type dedup struct {
	prefix  string
	metrics *observability.Metrics
	calls   *batcher.Batcher[dedupCall, bool]
}

// dedupCall asks whether key exists, or (record) sets it.
type dedupCall struct {
	key    string
	record bool
}

// dedupTimeout bounds dedup's Redis calls: it must never hold a message up.
const dedupTimeout = 500 * time.Millisecond

// newDedup sends at most two pipelines at once.
func newDedup(client redis.UniversalClient, prefix string, ttl time.Duration, metrics *observability.Metrics) *dedup {
	run := func(calls []dedupCall) []bool {
		ctx, cancel := context.WithTimeout(context.Background(), dedupTimeout)
		defer cancel()
		pipe := client.Pipeline()
		exists := make([]*redis.IntCmd, len(calls))
		for i, c := range calls {
			if c.record {
				pipe.Set(ctx, c.key, 1, ttl) // best effort, see above
			} else {
				exists[i] = pipe.Exists(ctx, c.key)
			}
		}
		_, _ = pipe.Exec(ctx) // each command carries its own error
		seen := make([]bool, len(calls))
		for i, cmd := range exists {
			seen[i] = cmd != nil && cmd.Err() == nil && cmd.Val() == 1
		}
		return seen
	}
	return &dedup{prefix: prefix, metrics: metrics, calls: batcher.New(2, 1000, run)}
}

func (d *dedup) key(uuid string) string { return d.prefix + "handled:" + uuid }

func (d *dedup) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if transport.FirstDelivery(msg) {
			return h(msg)
		}
		if d.calls.Do(dedupCall{key: d.key(msg.UUID)}) {
			d.metrics.EventsProcessed.WithLabelValues("REDELIVERED").Inc()
			return nil, nil
		}
		out, err := h(msg)
		if err == nil {
			d.calls.Do(dedupCall{key: d.key(msg.UUID), record: true})
		}
		return out, err
	}
}
