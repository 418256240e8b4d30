package handlers

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/daybook/daybook/eventstore"
)

// relay moves the outbox to the event log (eventstore.NewRelay) on a router
// of its own, so that it starts and stops like the other services and the
// consumers' router carries consumers only. A relay that stops by itself is
// logged; the outbox keeps its rows until the next start.
type relay struct {
	router *message.Router
	logger *slog.Logger

	mu   sync.Mutex
	done chan struct{}
}

func newRelay(pool *pgxpool.Pool, out message.Publisher, closeTimeout time.Duration, logger *slog.Logger) (*relay, error) {
	wmLogger := watermill.NewSlogLogger(logger)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: closeTimeout}, wmLogger)
	if err != nil {
		return nil, err
	}
	if err := eventstore.NewRelay(pool, out, router, wmLogger, eventstore.RelayConfig{}); err != nil {
		return nil, err
	}
	return &relay{router: router, logger: logger}, nil
}

// Start runs the relay until Stop.
func (r *relay) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done != nil {
		return
	}
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		if err := r.router.Run(ctx); err != nil {
			r.logger.Error("outbox relay stopped", "error", err)
		}
	}()
}

// Stop closes the relay's router and waits for it; safe before Start.
func (r *relay) Stop() {
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	if err := r.router.Close(); err != nil {
		r.logger.Warn("close outbox relay", "error", err)
	}
	if done != nil {
		<-done
	}
}
