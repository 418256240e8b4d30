package handlers

import (
	"context"
	"log/slog"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/daybook/daybook/eventstore"
)

// relay runs the outbox relay (eventstore.Relay) as a service: it starts and
// stops with the rescuer, gauges and reconciler. The outbox keeps its rows
// while it is stopped.
type relay struct {
	relay *eventstore.Relay

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

func newRelay(pool *pgxpool.Pool, out message.Publisher, logger *slog.Logger) *relay {
	return &relay{relay: eventstore.NewRelay(pool, out, eventstore.RelayConfig{Logger: logger})}
}

// Start runs the relay until Stop.
func (r *relay) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done != nil {
		return
	}
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		r.relay.Run(ctx)
	}()
}

// Stop ends the relay after its batch in progress; safe before Start.
func (r *relay) Stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}
