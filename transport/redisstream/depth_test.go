package redisstream

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/transport"
)

const testGroup = "daybook-worker"

// admitN puts n events on the gate's stream and returns their stream entry ids, oldest first.
func admitN(t *testing.T, g *Gate, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		res, err := g.Admit(context.Background(), testAdmission("client-1", uuid.NewString()))
		require.NoError(t, err)
		require.Equal(t, transport.Accepted, res.Outcome)
		ids[i] = res.MessageID
	}
	return ids
}

// readGroup delivers up to count entries to a consumer of group and returns their ids.
func readGroup(t *testing.T, client *redis.Client, stream, group string, count int64) []string {
	t.Helper()
	streams, err := client.XReadGroup(context.Background(), &redis.XReadGroupArgs{
		Group: group, Consumer: "consumer-1", Streams: []string{stream, ">"}, Count: count, Block: -1,
	}).Result()
	require.NoError(t, err)
	require.Len(t, streams, 1)
	ids := make([]string, len(streams[0].Messages))
	for i, m := range streams[0].Messages {
		ids[i] = m.ID
	}
	return ids
}

func requireDepth(t *testing.T, client *redis.Client, stream, group string, lag, pending int64) {
	t.Helper()
	gotLag, gotPending, err := StreamDepth(context.Background(), client, stream, group)
	require.NoError(t, err)
	require.Equal(t, [2]int64{lag, pending}, [2]int64{gotLag, gotPending}, "lag, pending")
}

func streamIDs(t *testing.T, client *redis.Client, stream string) []string {
	t.Helper()
	entries, err := client.XRange(context.Background(), stream, "-", "+").Result()
	require.NoError(t, err)
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	return ids
}

func TestStreamDepth_FollowsDeliveryAndAcknowledgement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{})
	admitN(t, g, 5)
	require.NoError(t, client.XGroupCreate(ctx, cfg.Stream, testGroup, "0").Err())
	requireDepth(t, client, cfg.Stream, testGroup, 5, 0)

	delivered := readGroup(t, client, cfg.Stream, testGroup, 2)
	requireDepth(t, client, cfg.Stream, testGroup, 3, 2)

	require.NoError(t, client.XAck(ctx, cfg.Stream, testGroup, delivered[0]).Err())
	requireDepth(t, client, cfg.Stream, testGroup, 3, 1)

	delivered = append(delivered[1:], readGroup(t, client, cfg.Stream, testGroup, 10)...)
	require.NoError(t, client.XAck(ctx, cfg.Stream, testGroup, delivered...).Err())
	requireDepth(t, client, cfg.Stream, testGroup, 0, 0)
}

// Before any worker subscribed, every entry waits: the group, once created,
// starts from the stream's first entry.
func TestStreamDepth_MissingStreamIsZeroAndMissingGroupLagsByEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{})

	requireDepth(t, client, cfg.Stream, testGroup, 0, 0)
	admitN(t, g, 2)
	requireDepth(t, client, cfg.Stream, testGroup, 2, 0)

	require.NoError(t, client.Set(ctx, cfg.KeyPrefix+"not-a-stream", "x", 0).Err())
	_, _, err := StreamDepth(ctx, client, cfg.KeyPrefix+"not-a-stream", testGroup)
	require.ErrorContains(t, err, "WRONGTYPE")
}

func TestStreamDepth_CountsWhenRedisCannotReportLag(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{})
	ids := admitN(t, g, 5)
	require.NoError(t, client.XGroupCreate(ctx, cfg.Stream, testGroup, "0").Err())
	readGroup(t, client, cfg.Stream, testGroup, 2)
	// Deleting an entry the group has not reached yet makes Redis report the lag as unknown.
	require.NoError(t, client.XDel(ctx, cfg.Stream, ids[3]).Err())
	groups, err := client.XInfoGroups(ctx, cfg.Stream).Result()
	require.NoError(t, err)
	require.EqualValues(t, -1, groups[0].Lag, "the fallback is what this test exercises")

	requireDepth(t, client, cfg.Stream, testGroup, 2, 2)
}

func TestTrimAcknowledged_RemovesOnlyWhatEveryGroupFinished(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{})
	ids := admitN(t, g, 6)
	require.NoError(t, client.XGroupCreate(ctx, cfg.Stream, "fast", "0").Err())
	require.NoError(t, client.XGroupCreate(ctx, cfg.Stream, "slow", "0").Err())

	// fast: delivered 1..5, acknowledged 1, 2, 4; 3 and 5 are still pending.
	fast := readGroup(t, client, cfg.Stream, "fast", 5)
	require.NoError(t, client.XAck(ctx, cfg.Stream, "fast", fast[0], fast[1], fast[3]).Err())
	// slow: delivered and acknowledged 1..4.
	slow := readGroup(t, client, cfg.Stream, "slow", 4)
	require.NoError(t, client.XAck(ctx, cfg.Stream, "slow", slow...).Err())

	removed, err := TrimAcknowledged(ctx, client, cfg.Stream)
	require.NoError(t, err)
	require.EqualValues(t, 2, removed, "entry 3 is pending in fast")
	require.Equal(t, ids[2:], streamIDs(t, client, cfg.Stream))

	// fast finishes everything it has; slow still has 5 and 6 undelivered.
	require.NoError(t, client.XAck(ctx, cfg.Stream, "fast", fast[2], fast[4]).Err())
	removed, err = TrimAcknowledged(ctx, client, cfg.Stream)
	require.NoError(t, err)
	require.EqualValues(t, 2, removed, "entries 3 and 4")
	require.Equal(t, ids[4:], streamIDs(t, client, cfg.Stream))

	// Both groups delivered everything, but slow still holds 6.
	readGroup(t, client, cfg.Stream, "fast", 10)
	require.NoError(t, client.XAck(ctx, cfg.Stream, "fast", ids[5]).Err())
	slow = readGroup(t, client, cfg.Stream, "slow", 10)
	require.Equal(t, ids[4:], slow)
	require.NoError(t, client.XAck(ctx, cfg.Stream, "slow", ids[4]).Err())
	removed, err = TrimAcknowledged(ctx, client, cfg.Stream)
	require.NoError(t, err)
	require.EqualValues(t, 1, removed)
	require.Equal(t, ids[5:], streamIDs(t, client, cfg.Stream))

	require.NoError(t, client.XAck(ctx, cfg.Stream, "slow", ids[5]).Err())
	removed, err = TrimAcknowledged(ctx, client, cfg.Stream)
	require.NoError(t, err)
	require.EqualValues(t, 1, removed, "the last delivered entry goes too once acknowledged")
	require.Empty(t, streamIDs(t, client, cfg.Stream))
	requireDepth(t, client, cfg.Stream, "slow", 0, 0)

	// A new entry is not trimmed before the groups have it.
	admitN(t, g, 1)
	removed, err = TrimAcknowledged(ctx, client, cfg.Stream)
	require.NoError(t, err)
	require.Zero(t, removed)
}

func TestTrimAcknowledged_NeverTrimsWithoutGroupsOrStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{})

	removed, err := TrimAcknowledged(ctx, client, cfg.Stream)
	require.NoError(t, err)
	require.Zero(t, removed)

	admitN(t, g, 3)
	removed, err = TrimAcknowledged(ctx, client, cfg.Stream)
	require.NoError(t, err)
	require.Zero(t, removed)
	require.Len(t, streamIDs(t, client, cfg.Stream), 3)

	// A group that has delivered nothing yet keeps everything, however far another group is.
	require.NoError(t, client.XGroupCreate(ctx, cfg.Stream, "done", "0").Err())
	done := readGroup(t, client, cfg.Stream, "done", 10)
	require.NoError(t, client.XAck(ctx, cfg.Stream, "done", done...).Err())
	require.NoError(t, client.XGroupCreate(ctx, cfg.Stream, "new", "0").Err())
	removed, err = TrimAcknowledged(ctx, client, cfg.Stream)
	require.NoError(t, err)
	require.Zero(t, removed)
	require.Len(t, streamIDs(t, client, cfg.Stream), 3)
}

func TestNextIDAcrossSequenceOverflow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := testClient(t)
	stream := testPrefix(t, client) + "events"

	// Explicit ids at the edge of the 64-bit sequence, which Lua's doubles cannot hold exactly.
	for _, id := range []string{"5-18446744073709551614", "5-18446744073709551615", "6-0"} {
		require.NoError(t, client.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: id, Values: []string{"f", "v"}}).Err())
	}
	require.NoError(t, client.XGroupCreate(ctx, stream, testGroup, "0").Err())
	delivered := readGroup(t, client, stream, testGroup, 2)
	require.NoError(t, client.XAck(ctx, stream, testGroup, delivered...).Err())

	removed, err := TrimAcknowledged(ctx, client, stream)
	require.NoError(t, err)
	require.EqualValues(t, 2, removed)
	require.Equal(t, []string{"6-0"}, streamIDs(t, client, stream))
}

// Redis derives a group's lag from a counter that drifts once Redis lost data
// and the group was recreated or moved (seen under chaos: lag 8,053 for a
// group that had delivered the stream's last entry, the stream trimmed
// empty). The depth trusts positions over the counter.
func TestStreamDepth_IgnoresALagCounterThatDrifted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{})
	admitN(t, g, 5)
	// The group at the stream's end, its entries-read counter left at 0:
	// Redis then reports a lag of 5.
	require.NoError(t, client.XGroupCreate(ctx, cfg.Stream, testGroup, "$").Err())
	require.NoError(t, client.Do(ctx, "XGROUP", "SETID", cfg.Stream, testGroup, "$", "ENTRIESREAD", 0).Err())
	groups, err := client.XInfoGroups(ctx, cfg.Stream).Result()
	require.NoError(t, err)
	require.EqualValues(t, 5, groups[0].Lag, "the drift is what this test exercises")
	requireDepth(t, client, cfg.Stream, testGroup, 0, 0)

	// Trimmed empty, with new entries counted as added: still nothing waits.
	require.NoError(t, client.XTrimMaxLen(ctx, cfg.Stream, 0).Err())
	requireDepth(t, client, cfg.Stream, testGroup, 0, 0)

	// Past the drift, what is really waiting is counted.
	admitN(t, g, 3)
	requireDepth(t, client, cfg.Stream, testGroup, 3, 0)
}
