package redisstream

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/internal/periodic"
)

// trimmer removes a stream's entries every consumer group has finished
// with: the work stream's producer never trims (a cap would drop
// unprocessed messages), and the log stream's cap is only a backstop.
// Redis Streams only: SQS deletes acknowledged messages itself.
type trimmer struct {
	periodic.Loop
	redis  redis.UniversalClient
	stream string
	logger *slog.Logger
}

func newTrimmer(rdb redis.UniversalClient, stream string, interval time.Duration, logger *slog.Logger) *trimmer {
	t := &trimmer{redis: rdb, stream: stream, logger: logger}
	t.Loop = periodic.Loop{Interval: interval, Immediate: true, Fn: func(ctx context.Context) { _, _ = t.runOnce(ctx) }}
	return t
}

func (t *trimmer) runOnce(ctx context.Context) (int64, error) {
	n, err := TrimAcknowledged(ctx, t.redis, t.stream)
	if err != nil && ctx.Err() == nil {
		t.logger.Warn("trim stream", "stream", t.stream, "error", err)
	}
	return n, err
}
