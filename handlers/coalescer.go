package handlers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/batcher"
)

// coalescer is group commit for the consumers: each consumer hands over its
// event and waits; whatever is waiting (up to batchMax) is processed as one
// batch, so a commit and a disk flush serve many events.
// Per-message semantics stay: every consumer gets its own event's outcome and
// acks, retries or dead-letters its own message.
type coalescer struct {
	batches *batcher.Batcher[ingest.Delivery, ingest.BatchResult]
}

// newCoalescer processes up to flushers batches at once.
func newCoalescer(p *ingest.Processor, sizes prometheus.Histogram, flushers, batchMax int, timeout time.Duration) *coalescer {
	return &coalescer{batches: batcher.New(flushers, batchMax, func(deliveries []ingest.Delivery) []ingest.BatchResult {
		sizes.Observe(float64(len(deliveries)))
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return p.ProcessDeliveries(ctx, deliveries)
	})}
}

// process hands d to the next batch and waits for its result. A batch is
// bounded by the attempt timeout, not by the caller: once handed over, an
// attempt finishes even while the worker shuts down.
func (c *coalescer) process(d ingest.Delivery) (ingest.Outcome, error) {
	r := c.batches.Do(d)
	return r.Outcome, r.Err
}
