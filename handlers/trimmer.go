package handlers

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/gate"
)

// trimmer removes work-stream entries every consumer group has finished
// with: the producer never trims (a cap would drop unprocessed messages).
// Redis Streams only: SQS deletes acknowledged messages itself.
type trimmer struct {
	periodic
	redis  redis.UniversalClient
	stream string
	logger *slog.Logger
}

func newTrimmer(rdb redis.UniversalClient, stream string, interval time.Duration, logger *slog.Logger) *trimmer {
	t := &trimmer{redis: rdb, stream: stream, logger: logger}
	t.periodic = periodic{interval: interval, immediate: true, fn: func(ctx context.Context) { _, _ = t.runOnce(ctx) }}
	return t
}

func (t *trimmer) runOnce(ctx context.Context) (int64, error) {
	n, err := gate.TrimAcknowledged(ctx, t.redis, t.stream)
	if err != nil && ctx.Err() == nil {
		t.logger.Warn("trim work stream", "error", err)
	}
	return n, err
}
