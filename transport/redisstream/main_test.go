package redisstream

import (
	"context"
	"crypto/rand"
	"os"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/daybook/daybook/transport"
)

func TestMain(m *testing.M) {
	// redisstream's reader sleeps 500 ms after a read error, and Close does not
	// wait for it: a subscriber closed mid-read leaves it behind for that long.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream.(*Subscriber).read"))
}

// testRedisURL is where the tests find Redis unless REDIS_URL says otherwise.
const testRedisURL = "redis://127.0.0.1:6379/0"

// testClient returns a client of the test Redis, closed when the test ends.
func testClient(tb testing.TB) *redis.Client {
	tb.Helper()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = testRedisURL
	}
	opts, err := redis.ParseURL(url)
	require.NoError(tb, err)
	client := redis.NewClient(opts)
	tb.Cleanup(func() { _ = client.Close() })
	require.NoError(tb, client.Ping(context.Background()).Err(), "the gate tests need Redis at %s", url)
	return client
}

// testPrefix returns a key prefix of the test's own, whose keys are deleted when the test ends,
// so that tests running side by side in one Redis never see each other's keys.
func testPrefix(tb testing.TB, client *redis.Client) string {
	tb.Helper()
	prefix := "gatetest:" + rand.Text() + ":"
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			_ = client.Del(ctx, iter.Val()).Err()
		}
	})
	return prefix
}

// newTestGate returns a gate whose keys and stream live under a prefix of the test's own.
func newTestGate(tb testing.TB, cfg GateConfig) (*Gate, *redis.Client, GateConfig) {
	tb.Helper()
	client := testClient(tb)
	prefix := testPrefix(tb, client)
	cfg.KeyPrefix = prefix
	cfg.Stream = prefix + "events"
	g, err := NewGate(client, cfg)
	require.NoError(tb, err)
	return g, client, g.cfg
}

func testAdmission(clientID, idempotencyKey string) transport.Admission {
	eventID := uuid.NewString()
	return transport.Admission{
		ClientID:       clientID,
		IdempotencyKey: idempotencyKey,
		EventID:        eventID,
		MessageUUID:    uuid.NewString(),
		Payload:        []byte(`{"event_id":"` + eventID + `"}`),
		MetadataJSON:   `{"source":"shop"}`,
		Pending: map[string]string{
			"idempotency_key": idempotencyKey,
			"source":          "shop",
			"type":            "order.updated",
			"received_at":     "2026-01-02T03:04:05Z",
		},
	}
}
