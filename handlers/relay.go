package handlers

import (
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/internal/periodic"
)

// relay runs the outbox relay as a service: every poll interval it drains
// what the outbox holds, batch after batch. Stop waits for the batch in
// progress; the outbox keeps its rows while the relay is stopped.
type relay struct {
	periodic.Loop
}

func newRelay(pool *pgxpool.Pool, out message.Publisher, logger *slog.Logger) *relay {
	r := eventstore.NewRelay(pool, out, eventstore.RelayConfig{Logger: logger})
	return &relay{Loop: periodic.Loop{Interval: eventstore.RelayPollInterval, Immediate: true, Fn: r.Drain}}
}
