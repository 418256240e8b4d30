package handlers

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/daybook/daybook/ingest"
)

// coalescer is group commit for the consumers: each consumer hands over its
// event and waits; flushers take whatever is waiting (up to batchMax) and
// process it as one batch, so a commit and a disk flush serve many events.
// Per-message semantics stay: every consumer gets its own event's outcome and
// acks, retries or dead-letters its own message.
type coalescer struct {
	processor *ingest.Processor
	sizes     prometheus.Histogram
	timeout   time.Duration
	batchMax  int
	requests  chan coalesced
	wg        sync.WaitGroup
}

type coalesced struct {
	event ingest.Event
	reply chan ingest.BatchResult
}

// newCoalescer starts flushers goroutines; stop ends them.
func newCoalescer(p *ingest.Processor, sizes prometheus.Histogram, flushers, batchMax int, timeout time.Duration) *coalescer {
	c := &coalescer{processor: p, sizes: sizes, timeout: timeout, batchMax: batchMax, requests: make(chan coalesced)}
	for range flushers {
		c.wg.Add(1)
		go c.flush()
	}
	return c
}

// process hands e to the next batch and waits for its result. A batch once
// started finishes even if ctx ends (it is bounded by the attempt timeout).
func (c *coalescer) process(ctx context.Context, e ingest.Event) (ingest.Outcome, error) {
	reply := make(chan ingest.BatchResult, 1)
	select {
	case c.requests <- coalesced{event: e, reply: reply}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	r := <-reply
	return r.Outcome, r.Err
}

func (c *coalescer) flush() {
	defer c.wg.Done()
	for first := range c.requests {
		batch := []coalesced{first}
	collect:
		for len(batch) < c.batchMax {
			select {
			case req, ok := <-c.requests:
				if !ok {
					break collect
				}
				batch = append(batch, req)
			default:
				break collect
			}
		}
		c.sizes.Observe(float64(len(batch)))
		events := make([]ingest.Event, len(batch))
		for i, req := range batch {
			events[i] = req.event
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		results := c.processor.ProcessBatch(ctx, events)
		cancel()
		for i, req := range batch {
			req.reply <- results[i]
		}
	}
}

// stop ends the flushers once no consumer can hand over anything more.
func (c *coalescer) stop() {
	close(c.requests)
	c.wg.Wait()
}
