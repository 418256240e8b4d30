package redisstream

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/redis/go-redis/v9"
)

const (
	// lagCountMax bounds the fallback count when Redis cannot report a group's lag: the count walks
	// the stream inside a script that blocks Redis, so past this the depth is reported as this floor.
	lagCountMax = 100_000
	// lagCountPageSize bounds the entries (payloads included) one XRANGE copies into Lua memory.
	lagCountPageSize = 100
)

//go:embed depth.lua
var depthLua string

//go:embed trim.lua
var trimLua string

// StreamDepth returns, for one consumer group of a stream, lag (entries not yet delivered to the
// group: the queue depth) and pending (delivered but not yet acknowledged). Both are read in one
// atomic script. A missing stream counts as 0 for both; a missing group has every entry of the
// stream as its lag (its consumers create it from the first entry when they subscribe).
//
// Redis 7 reports lag itself; where it cannot (entries after the group's position were deleted) the
// entries after the group's last-delivered-id are counted, up to lagCountMax.
func StreamDepth(ctx context.Context, client redis.UniversalClient, stream, group string) (lag, pending int64, err error) {
	reply, err := redis.NewScript(depthLua).Run(ctx, client, []string{stream}, group, lagCountMax, lagCountPageSize).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("stream depth of %s/%s: %w", stream, group, err)
	}
	if len(reply) != 2 {
		return 0, 0, fmt.Errorf("stream depth of %s/%s: reply has %d elements", stream, group, len(reply))
	}
	return reply[0], reply[1], nil
}

// TrimAcknowledged removes the entries of a stream that every consumer group has finished with and
// returns how many it removed. An entry is kept while any group has not yet delivered it or still
// holds it unacknowledged (it is at or after the group's oldest pending entry, from XPENDING), so a
// consumer that crashes can still claim it; a stream without groups is never trimmed. Everything is
// decided and trimmed in one script, so no group can move back or appear in between.
//
// This is the only trimming of the work stream: the producer adds without MAXLEN, because a length
// cap would drop messages no consumer has processed yet.
func TrimAcknowledged(ctx context.Context, client redis.UniversalClient, stream string) (int64, error) {
	removed, err := redis.NewScript(trimLua).Run(ctx, client, []string{stream}).Int64()
	if err != nil {
		return 0, fmt.Errorf("trim acknowledged entries of %s: %w", stream, err)
	}
	return removed, nil
}
