// Package periodic runs a function every interval as a service with Start
// and Stop: the worker's maintenance loops and the transports' are built on it.
package periodic

import (
	"context"
	"sync"
	"time"
)

// Loop is a background loop as a service: Start runs Fn every Interval
// (first at once when Immediate, else after one interval) until Stop, which
// waits for the run in progress. Services embed it, each in its own file with
// its own runOnce for tests to call.
type Loop struct {
	Interval  time.Duration
	Immediate bool
	Fn        func(context.Context)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start launches the loop; it runs until Stop or until ctx ends.
func (p *Loop) Start(ctx context.Context) {
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
func (p *Loop) Stop() {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (p *Loop) loop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(p.Interval)
	defer tick.Stop()
	if p.Immediate {
		p.Fn(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.Fn(ctx)
	}
}
