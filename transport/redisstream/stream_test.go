package redisstream

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testproxy"
	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/transport"
)

func TestMarshaller_RoundTripsUUIDPayloadAndMetadata(t *testing.T) {
	t.Parallel()
	msg := message.NewMessage("u-1", []byte(`{"a":1}`))
	msg.Metadata.Set("correlation_id", "c-1")
	values, err := Marshaller{}.Marshal("topic", msg)
	require.NoError(t, err)
	// Redis hands every field back as a string.
	asRedis := map[string]any{}
	for k, v := range values {
		switch v := v.(type) {
		case []byte:
			asRedis[k] = string(v)
		default:
			asRedis[k] = v
		}
	}
	got, err := Marshaller{}.Unmarshal(asRedis)
	require.NoError(t, err)
	require.Equal(t, "u-1", got.UUID)
	require.Equal(t, `{"a":1}`, string(got.Payload))
	require.Equal(t, "c-1", got.Metadata.Get("correlation_id"))
	require.Empty(t, got.Metadata.Get(transport.MetaDecodeError))
}

// A malformed stream entry must not stop the subscriber (redisstream closes
// it on an unmarshal error): it becomes a flagged message instead.
func TestMarshaller_UnmarshalNeverFailsAndFlagsMalformedEntries(t *testing.T) {
	t.Parallel()
	for name, values := range map[string]map[string]any{
		"no uuid":          {FieldPayload: "{}", FieldMetadata: "{}"},
		"no payload":       {FieldUUID: "u", FieldMetadata: "{}"},
		"bad metadata":     {FieldUUID: "u", FieldPayload: "{}", FieldMetadata: "not json"},
		"metadata not map": {FieldUUID: "u", FieldPayload: "{}", FieldMetadata: `["x"]`},
		"foreign fields":   {"foo": "bar"},
	} {
		msg, err := Marshaller{}.Unmarshal(values)
		require.NoError(t, err, name)
		require.NotEmpty(t, msg.UUID, name)
		require.NotEmpty(t, msg.Metadata.Get(transport.MetaDecodeError), name)
	}
}

func TestHandBackPending_MakesAPreviousRunsMessagesClaimableAtOnce(t *testing.T) {
	t.Parallel()
	client, prefix := testredis.New(t)
	ctx := context.Background()
	stream := prefix + transport.EventsTopic
	require.NoError(t, client.XGroupCreateMkStream(ctx, stream, transport.WorkGroup, "0").Err())
	for range 3 {
		require.NoError(t, client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{FieldUUID: "u", FieldPayload: "{}"}}).Err())
	}
	_, err := client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: transport.WorkGroup, Consumer: "host-0", Streams: []string{stream, ">"}, Count: 2}).Result()
	require.NoError(t, err)
	_, err = client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: transport.WorkGroup, Consumer: "other-0", Streams: []string{stream, ">"}, Count: 1}).Result()
	require.NoError(t, err)

	n, err := HandBackPending(ctx, client, stream, []string{"host-0", "host-1"}, time.Hour)
	require.NoError(t, err)
	require.Equal(t, 2, n)

	pending, err := client.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: transport.WorkGroup, Start: "-", End: "+", Count: 10}).Result()
	require.NoError(t, err)
	require.Len(t, pending, 3)
	for _, p := range pending {
		if p.Consumer == "host-0" {
			require.GreaterOrEqual(t, p.Idle, 59*time.Minute, "marked long idle")
		} else {
			require.Less(t, p.Idle, time.Minute, "another consumer's message is left alone")
		}
	}
}

func TestHandBackPending_NoGroupYetIsNothingToDo(t *testing.T) {
	t.Parallel()
	client, prefix := testredis.New(t)
	n, err := HandBackPending(context.Background(), client, prefix+transport.EventsTopic, []string{"host-0"}, time.Hour)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestEventually_SubscribesOnceTheBrokerIsBackAndDeliversMessages(t *testing.T) {
	t.Parallel()
	client, prefix := testredis.New(t)
	stream := prefix + "daybook.log"
	proxy := testproxy.New(t, testredis.Options(t).Addr)
	proxy.Cut()
	opts := testredis.Options(t)
	opts.Addr = proxy.Addr()
	proxied := redis.NewClient(opts)
	t.Cleanup(func() { _ = proxied.Close() })
	sub, err := NewSubscriber(proxied, SubscriberConfig{Consumer: "c", Group: transport.ProjectionsGroup, ClaimIdle: time.Minute})
	require.NoError(t, err)
	var mu sync.Mutex
	failures := 0
	e := NewEventually(sub, 50*time.Millisecond, func(error) { mu.Lock(); failures++; mu.Unlock() })
	t.Cleanup(func() { require.NoError(t, e.Close()) })

	// Not t.Context: it ends before the cleanup closes the subscriber, which
	// would leave redisstream's reader sleeping after a read error.
	msgs, err := e.Subscribe(context.Background(), stream)
	require.NoError(t, err, "subscribing never fails while the broker is down")
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return failures >= 2 }, 5*time.Second, 10*time.Millisecond)

	proxy.Restore()
	pub, err := NewRedisPublisher(client, nil, nil)
	require.NoError(t, err)
	// Published once the group exists: a new group starts at the stream's end.
	require.Eventually(t, func() bool {
		groups, err := client.XInfoGroups(t.Context(), stream).Result()
		return err == nil && len(groups) == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, pub.Publish(stream, message.NewMessage("u-1", []byte(`{}`))))
	select {
	case msg := <-msgs:
		require.Equal(t, "u-1", msg.UUID)
		msg.Ack()
	case <-time.After(10 * time.Second):
		t.Fatal("no message after the broker came back")
	}
}

func TestEnsureGroup_RecreatesALostGroupOnly(t *testing.T) {
	t.Parallel()
	client, prefix := testredis.New(t)
	ctx := t.Context()
	stream := prefix + transport.EventsTopic

	created, err := EnsureGroup(ctx, client, stream, transport.WorkGroup)
	require.NoError(t, err)
	require.True(t, created, "no stream, no group: both made")
	created, err = EnsureGroup(ctx, client, stream, transport.WorkGroup)
	require.NoError(t, err)
	require.False(t, created, "an existing group is left alone")

	// Redis loses the stream (FLUSHALL, restart without persistence); an
	// event arrives afterwards and must be readable by the group again.
	require.NoError(t, client.Del(ctx, stream).Err())
	require.NoError(t, client.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{FieldUUID: "after", FieldPayload: "{}"}}).Err())
	created, err = EnsureGroup(ctx, client, stream, transport.WorkGroup)
	require.NoError(t, err)
	require.True(t, created)
	got, err := client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: transport.WorkGroup, Consumer: "c", Streams: []string{stream, ">"}, Count: 10}).Result()
	require.NoError(t, err)
	require.Len(t, got[0].Messages, 1, "the group reads from the stream's first entry")
}

func TestPipelinedPublisher_AppendsABatchInOrderInTheStreamLayout(t *testing.T) {
	t.Parallel()
	client, prefix := testredis.New(t)
	stream := prefix + transport.LogTopic
	pub := NewPipelinedPublisher(client, map[string]int64{stream: 1000})
	var sent []*message.Message
	for i := range 5 {
		msg := message.NewMessage(fmt.Sprintf("u-%d", i), []byte(fmt.Sprintf(`{"i":%d}`, i)))
		msg.Metadata.Set("event_type", "x")
		sent = append(sent, msg)
	}
	require.NoError(t, pub.Publish(stream, sent...))
	require.NoError(t, pub.Publish(stream)) // nothing to send

	entries, err := client.XRange(t.Context(), stream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, len(sent))
	for i, e := range entries {
		got, err := Marshaller{}.Unmarshal(e.Values)
		require.NoError(t, err)
		require.Equal(t, sent[i].UUID, got.UUID, "in the order given")
		require.Equal(t, string(sent[i].Payload), string(got.Payload))
		require.Equal(t, "x", got.Metadata.Get("event_type"))
		require.Empty(t, got.Metadata.Get(transport.MetaDecodeError))
	}
}
