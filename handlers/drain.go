package handlers

import (
	"context"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// drainGate counts messages in flight and, once draining, lets no new one in.
type drainGate struct {
	mu       sync.Mutex
	draining bool
	inFlight sync.WaitGroup
	count    int
}

func (d *drainGate) enter() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.draining {
		return false
	}
	d.inFlight.Add(1)
	d.count++
	return true
}

func (d *drainGate) leave() {
	d.mu.Lock()
	d.count--
	d.mu.Unlock()
	d.inFlight.Done()
}

// Middleware holds a message that arrives while draining until the router
// closes; it is then left unacknowledged and will be redelivered.
func (d *drainGate) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if !d.enter() {
			<-msg.Context().Done()
			return nil, errShuttingDown
		}
		defer d.leave()
		return h(msg)
	}
}

// Drain stops new messages and waits for those in flight, or for ctx. It
// returns how many were still in flight when it gave up.
func (d *drainGate) Drain(ctx context.Context) int {
	d.mu.Lock()
	d.draining = true
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.inFlight.Wait(); close(done) }()
	select {
	case <-done:
		return 0
	case <-ctx.Done():
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.count
	}
}
