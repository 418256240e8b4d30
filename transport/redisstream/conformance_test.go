package redisstream_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/redisstream"
	"github.com/daybook/daybook/transport/transporttest"
)

// conformanceFixture is a work stream under a key prefix of the test's own;
// every New is a process named "conformance" on it.
func conformanceFixture(t *testing.T) (transporttest.Fixture, *redis.Client) {
	client, prefix := testredis.New(t)
	topics := transport.Topics{Prefix: prefix}
	return transporttest.Fixture{
		Topics: topics,
		New: func(t *testing.T) transport.Work {
			t.Helper()
			tr, err := redisstream.New(client, redisstream.Config{
				Topics: topics, Name: "conformance", Consumers: 2,
				ClaimIdle: 300 * time.Millisecond, SlotLeaseTTL: time.Second,
			})
			require.NoError(t, err)
			return tr
		},
		PublishMalformed: func(t *testing.T) {
			t.Helper()
			// An entry without a uuid field, as a producer other than Daybook might add.
			require.NoError(t, client.XAdd(t.Context(), &redis.XAddArgs{
				Stream: topics.Events(),
				Values: map[string]any{redisstream.FieldPayload: `{"n":0}`, redisstream.FieldMetadata: `{"source":"elsewhere"}`},
			}).Err())
		},
		// ClaimIdle and a claim pass, or at once after a clean restart.
		RedeliveryAfterCrash: 3 * time.Second,
	}, client
}

func TestTransport_Conformance(t *testing.T) {
	t.Parallel()
	transporttest.Run(t, func(t *testing.T) transporttest.Fixture {
		f, _ := conformanceFixture(t)
		return f
	})
}

func TestTransport_PublishDeadLandsOnTheDeadStream(t *testing.T) {
	t.Parallel()
	f, client := conformanceFixture(t)
	work := f.New(t)
	t.Cleanup(func() { require.NoError(t, work.Close()) })

	dead := message.NewMessage("dead-1", []byte(`{"n":1}`))
	dead.Metadata.Set("correlation_id", "c-1")
	require.NoError(t, work.PublishDead(dead))

	entries, err := client.XRange(t.Context(), f.Topics.Dead(), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	got, err := redisstream.Marshaller{}.Unmarshal(entries[0].Values)
	require.NoError(t, err)
	require.Equal(t, "dead-1", got.UUID)
	require.JSONEq(t, `{"n":1}`, string(got.Payload))
	require.Equal(t, "c-1", got.Metadata.Get("correlation_id"))
	require.Empty(t, got.Metadata.Get(transport.MetaDecodeError))

	n, err := client.XLen(t.Context(), f.Topics.Events()).Result()
	require.NoError(t, err)
	require.Zero(t, n, "a dead letter is not put on the work stream")
}
