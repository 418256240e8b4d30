package handlers

import (
	"context"
	"sync"
	"time"
)

// periodic is a background loop as a service: Start runs fn every interval
// (first at once when immediate, else after one interval) until Stop, which
// waits for the run in progress. The worker's maintenance services are built
// on it, each in its own file with its own runOnce for tests to call.
type periodic struct {
	interval  time.Duration
	immediate bool
	fn        func(context.Context)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start launches the loop; it runs until Stop or until ctx ends.
func (p *periodic) Start(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		return
	}
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan struct{})
	go p.loop(ctx, p.done)
}

// Stop ends the loop and waits for it; safe before Start and twice.
func (p *periodic) Stop() {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (p *periodic) loop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	if p.immediate {
		p.fn(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.fn(ctx)
	}
}
