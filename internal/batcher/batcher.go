// Package batcher is group commit for concurrent callers: each hands over
// one request and waits for its own result, while whatever is waiting is
// served by one call of run (one transaction, one pipeline). Under load a
// round trip serves hundreds of callers; alone, a caller waits for nothing
// but its own call.
//
// There are no goroutines to start or stop: a caller that finds fewer than
// the allowed number of calls running makes the next call itself, for every
// request waiting at that moment (its own among them).
package batcher

import (
	"sync"
)

// Batcher runs batches of Req through run.
type Batcher[Req, Res any] struct {
	run   func([]Req) []Res
	max   int
	limit int

	mu      sync.Mutex
	queue   []waiting[Req, Res]
	running int
}

type waiting[Req, Res any] struct {
	req   Req
	reply chan Res
}

// New returns a Batcher making at most concurrency calls of run at once,
// each with at most max requests. run must return one result per request,
// in order.
func New[Req, Res any](concurrency, max int, run func([]Req) []Res) *Batcher[Req, Res] {
	return &Batcher[Req, Res]{run: run, max: max, limit: concurrency}
}

// Do adds req to the next batch and returns its result.
func (b *Batcher[Req, Res]) Do(req Req) Res {
	w := waiting[Req, Res]{req: req, reply: make(chan Res, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, w)
	lead := b.running < b.limit
	if lead {
		b.running++
	}
	b.mu.Unlock()
	if lead {
		b.serve(w.reply)
	}
	return <-w.reply
}

// serve makes calls until own's result is in, then leaves: if requests are
// still waiting and no other call runs, it hands them to a new goroutine, so
// no request is ever left without a call coming.
func (b *Batcher[Req, Res]) serve(own chan Res) {
	for {
		b.mu.Lock()
		if len(own) > 0 || len(b.queue) == 0 {
			if len(b.queue) > 0 && b.running == 1 {
				b.mu.Unlock()
				go b.serve(nil)
				return
			}
			b.running--
			b.mu.Unlock()
			return
		}
		n := min(len(b.queue), b.max)
		batch := make([]waiting[Req, Res], n)
		copy(batch, b.queue)
		b.queue = append(b.queue[:0:0], b.queue[n:]...)
		b.mu.Unlock()

		reqs := make([]Req, n)
		for i, w := range batch {
			reqs[i] = w.req
		}
		results := b.run(reqs)
		for i, w := range batch {
			w.reply <- results[i]
		}
	}
}
