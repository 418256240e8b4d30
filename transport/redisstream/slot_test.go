package redisstream

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testredis"
)

// Two workers of one name on one host used to share every consumer name.
// Each live process now holds a slot of its own; a cleanly stopped one frees
// it for its successor, which so finds what it left pending under the same
// names; a crashed one's lease expires after the TTL.
func TestSlotLease_LiveProcessesHoldDistinctSlotsAndARestartGetsItsOwnBack(t *testing.T) {
	t.Parallel()
	rdb, prefix := testredis.New(t)
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	const ttl = 300 * time.Millisecond

	first, err := leaseSlot(ctx, rdb, prefix, "host", ttl, logger)
	require.NoError(t, err)
	second, err := leaseSlot(ctx, rdb, prefix, "host", ttl, logger)
	require.NoError(t, err)
	other, err := leaseSlot(ctx, rdb, prefix, "other-host", ttl, logger)
	require.NoError(t, err)
	require.Equal(t, 0, first.slot)
	require.Equal(t, 1, second.slot)
	require.Equal(t, 0, other.slot, "names are leased apart")

	// Renewal keeps a live slot past its TTL.
	time.Sleep(3 * ttl)
	third, err := leaseSlot(ctx, rdb, prefix, "host", ttl, logger)
	require.NoError(t, err)
	require.Equal(t, 2, third.slot, "slots 0 and 1 are still held")

	// A clean stop frees the slot at once: the next process gets it back.
	first.release()
	first.release() // twice is harmless
	again, err := leaseSlot(ctx, rdb, prefix, "host", ttl, logger)
	require.NoError(t, err)
	require.Equal(t, 0, again.slot)

	// A crash (no release, no renewal) leaves the slot until the TTL ends.
	close(second.stop)
	<-second.done
	require.Eventually(t, func() bool {
		n, err := rdb.Exists(ctx, second.key).Result()
		return err == nil && n == 0
	}, 5*ttl, 20*time.Millisecond)
	next, err := leaseSlot(ctx, rdb, prefix, "host", ttl, logger)
	require.NoError(t, err)
	require.Equal(t, 1, next.slot)

	// A lease lost to a Redis flush is taken back at the next renewal.
	require.NoError(t, rdb.Del(ctx, again.key).Err())
	require.Eventually(t, func() bool {
		v, err := rdb.Get(ctx, again.key).Result()
		return err == nil && v == again.token
	}, 5*ttl, 20*time.Millisecond)

	for _, l := range []*slotLease{third, again, next, other} {
		l.release()
	}
	n, err := rdb.Exists(ctx, third.key, again.key, next.key, other.key).Result()
	require.NoError(t, err)
	require.Zero(t, n)
}
