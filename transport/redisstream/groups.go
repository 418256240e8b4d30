package redisstream

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/internal/periodic"
)

// groupKeeper recreates consumer groups Redis lost, so consumption resumes
// instead of every read failing with NOGROUP. What the stream held when Redis
// lost it is gone with it: Redis Streams needs persistence (AOF) to keep
// accepted events, which is why production uses SQS. Its first check waits
// one interval: the subscribers create their groups when they subscribe.
type groupKeeper struct {
	periodic.Loop
	redis  redis.UniversalClient
	groups func() map[string]string // stream → group
	logger *slog.Logger
}

func newGroupKeeper(rdb redis.UniversalClient, groups func() map[string]string, interval time.Duration, logger *slog.Logger) *groupKeeper {
	k := &groupKeeper{redis: rdb, groups: groups, logger: logger}
	k.Loop = periodic.Loop{Interval: interval, Fn: k.runOnce}
	return k
}

func (k *groupKeeper) runOnce(ctx context.Context) {
	for stream, group := range k.groups() {
		created, err := EnsureGroup(ctx, k.redis, stream, group)
		if created {
			k.logger.Error("consumer group was missing: Redis lost its data (restart without persistence, flush or failover); recreated it", "stream", stream, "group", group)
		} else if err != nil && ctx.Err() == nil {
			k.logger.Warn("check consumer group", "stream", stream, "group", group, "error", err)
		}
	}
}
