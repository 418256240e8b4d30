package redisstream

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/transport"
)

// commandCounter counts the commands a client sends, pipelined or not.
type commandCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add(cmd)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.add(cmd)
		}
		return next(ctx, cmds)
	}
}

func (c *commandCounter) add(cmd redis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[strings.ToLower(cmd.Name())]++
}

func (c *commandCounter) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[name]
}

func fillStream(t *testing.T, client *redis.Client, stream string, n int) {
	t.Helper()
	fillStreamWith(t, client, stream, n, nil)
}

// fillStreamWith is fillStream with metadata set on every message.
func fillStreamWith(t *testing.T, client *redis.Client, stream string, n int, metadata message.Metadata) {
	t.Helper()
	pub := NewPipelinedPublisher(client, nil)
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(fmt.Sprintf("m-%04d", i), []byte(fmt.Sprintf(`{"n":%d}`, i)))
		for k, v := range metadata {
			msgs[i].Metadata.Set(k, v)
		}
	}
	require.NoError(t, pub.Publish(stream, msgs...))
}

func newTestSubscriber(t *testing.T, client redis.UniversalClient, cfg SubscriberConfig) *Subscriber {
	t.Helper()
	if cfg.ClaimIdle == 0 {
		cfg.ClaimIdle = time.Minute
	}
	sub, err := NewSubscriber(client, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sub.Close()) })
	return sub
}

// One XREADGROUP takes a batch and one XACK acknowledges many: 1,000
// messages cost a handful of round trips, each message delivered once and
// none left pending.
func TestSubscriber_ReadsAndAcknowledgesInBatches(t *testing.T) {
	t.Parallel()
	client, prefix := testredis.New(t)
	stream := prefix + transport.EventsTopic
	const n = 1000
	fillStream(t, client, stream, n)
	counter := &commandCounter{}
	counted := redis.NewClient(testredis.Options(t))
	counted.AddHook(counter)
	t.Cleanup(func() { _ = counted.Close() })
	sub := newTestSubscriber(t, counted, SubscriberConfig{Consumer: "c", Batch: 250, InFlight: 500})

	msgs, err := sub.Subscribe(context.Background(), stream)
	require.NoError(t, err)
	seen := map[string]int{}
	for len(seen) < n {
		select {
		case m := <-msgs:
			seen[m.UUID]++
			m.Ack()
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d messages delivered", len(seen), n)
		}
	}
	for id, c := range seen {
		require.Equal(t, 1, c, "message %s", id)
	}
	require.Eventually(t, func() bool {
		p, err := client.XPending(t.Context(), stream, transport.WorkGroup).Result()
		return err == nil && p.Count == 0
	}, 5*time.Second, 10*time.Millisecond, "every handled message is acknowledged")
	reads, acks := counter.count("xreadgroup"), counter.count("xack")
	t.Logf("%d messages: %d XREADGROUP, %d XACK", n, reads, acks)
	// A read takes the slots free at that moment: on a loaded machine acks
	// free them in smaller steps, so a few more reads than n/Batch happen,
	// never one per message.
	require.LessOrEqual(t, reads, n/100, "reads are batched")
	require.Less(t, acks, n/10, "acknowledgements are batched")
}

// A subscriber never holds more than InFlight messages: while none is
// acknowledged it stops reading, and it goes on once they are.
func TestSubscriber_HoldsAtMostInFlight(t *testing.T) {
	t.Parallel()
	client, prefix := testredis.New(t)
	stream := prefix + transport.EventsTopic
	fillStream(t, client, stream, 300)
	sub := newTestSubscriber(t, client, SubscriberConfig{Consumer: "c", Batch: 50, InFlight: 100})
	msgs, err := sub.Subscribe(context.Background(), stream)
	require.NoError(t, err)

	var held []*message.Message
	for len(held) < 100 {
		select {
		case m := <-msgs:
			held = append(held, m)
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d messages handed out", len(held))
		}
	}
	select {
	case m := <-msgs:
		t.Fatalf("message %s handed out beyond InFlight", m.UUID)
	case <-time.After(300 * time.Millisecond):
	}
	p, err := client.XPending(t.Context(), stream, transport.WorkGroup).Result()
	require.NoError(t, err)
	require.EqualValues(t, 100, p.Count, "nothing is read from Redis beyond InFlight")

	for _, m := range held {
		m.Ack()
	}
	for range 200 {
		select {
		case m := <-msgs:
			m.Ack()
		case <-time.After(5 * time.Second):
			t.Fatal("reading did not go on after the acknowledgements")
		}
	}
}

// A nacked message comes back after NackResendSleep, as a new message with
// the same uuid, payload and metadata; the others are not held up by it.
// What XREADGROUP reads as new is a first delivery; the nacked message's
// second hand-out is not.
func TestSubscriber_NackedMessageComesBack(t *testing.T) {
	t.Parallel()
	client, prefix := testredis.New(t)
	stream := prefix + transport.EventsTopic
	pub := NewPipelinedPublisher(client, nil)
	first := message.NewMessage("nacked", []byte(`{"n":1}`))
	first.Metadata.Set("correlation_id", "c-1")
	require.NoError(t, pub.Publish(stream, first, message.NewMessage("other", []byte(`{}`))))
	sub := newTestSubscriber(t, client, SubscriberConfig{Consumer: "c", NackResendSleep: 50 * time.Millisecond})
	msgs, err := sub.Subscribe(context.Background(), stream)
	require.NoError(t, err)

	deliveries := map[string]int{}
	for deliveries["nacked"] < 2 || deliveries["other"] < 1 {
		select {
		case m := <-msgs:
			deliveries[m.UUID]++
			require.Equal(t, deliveries[m.UUID] == 1, transport.FirstDelivery(m),
				"first delivery flag of %s on delivery %d", m.UUID, deliveries[m.UUID])
			if m.UUID == "nacked" && deliveries["nacked"] == 1 {
				m.Nack()
				continue
			}
			if m.UUID == "nacked" {
				require.JSONEq(t, `{"n":1}`, string(m.Payload))
				require.Equal(t, "c-1", m.Metadata.Get("correlation_id"))
			}
			m.Ack()
		case <-time.After(5 * time.Second):
			t.Fatalf("deliveries so far: %v", deliveries)
		}
	}
	require.Equal(t, map[string]int{"nacked": 2, "other": 1}, deliveries)
}

// What a consumer that went away left pending is claimed in batches after
// ClaimIdle and delivered, not as a first delivery (the dead consumer may
// have started on it), even though each entry was published carrying a
// stale first-delivery flag; what this process holds is never claimed back
// into a second delivery.
func TestSubscriber_ClaimsWhatADeadConsumerLeft(t *testing.T) {
	t.Parallel()
	client, prefix := testredis.New(t)
	stream := prefix + transport.EventsTopic
	fillStreamWith(t, client, stream, 120, message.Metadata{transport.MetaFirstDelivery: "1"})
	entries, err := client.XRangeN(t.Context(), stream, "-", "+", 1).Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Contains(t, entries[0].Values[FieldMetadata], `"`+transport.MetaFirstDelivery+`":"1"`,
		"the stream entry itself carries the stale flag")
	_, err = EnsureGroup(t.Context(), client, stream, transport.WorkGroup)
	require.NoError(t, err)
	// A consumer reads 120 entries and dies holding them.
	_, err = client.XReadGroup(t.Context(), &redis.XReadGroupArgs{
		Group: transport.WorkGroup, Consumer: "dead", Streams: []string{stream, ">"}, Count: 120,
	}).Result()
	require.NoError(t, err)

	counter := &commandCounter{}
	counted := redis.NewClient(testredis.Options(t))
	counted.AddHook(counter)
	t.Cleanup(func() { _ = counted.Close() })
	sub := newTestSubscriber(t, counted, SubscriberConfig{Consumer: "alive", Batch: 50, ClaimIdle: 200 * time.Millisecond})
	msgs, err := sub.Subscribe(context.Background(), stream)
	require.NoError(t, err)
	var delivered atomic.Int64
	seen := map[string]int{}
	var holdOne *message.Message
	deadline := time.After(10 * time.Second)
	for len(seen) < 120 {
		select {
		case m := <-msgs:
			seen[m.UUID]++
			delivered.Add(1)
			require.False(t, transport.FirstDelivery(m), "claimed message %s marked as a first delivery", m.UUID)
			if holdOne == nil {
				holdOne = m // kept in hand across several claim passes
				continue
			}
			m.Ack()
		case <-deadline:
			t.Fatalf("%d of 120 claimed", len(seen))
		}
	}
	time.Sleep(time.Second) // five claim passes while one message is in hand
	select {
	case m := <-msgs:
		t.Fatalf("message %s delivered again while held", m.UUID)
	default:
	}
	holdOne.Ack()
	require.EqualValues(t, 120, delivered.Load())
	require.Eventually(t, func() bool {
		p, err := client.XPending(t.Context(), stream, transport.WorkGroup).Result()
		return err == nil && p.Count == 0
	}, 5*time.Second, 10*time.Millisecond)
	require.GreaterOrEqual(t, counter.count("xautoclaim"), 3, "120 entries in claims of at most 50")
}

// Closing with messages in hand leaves them pending (delivered again later),
// acknowledges what was handled, and returns promptly.
func TestSubscriber_CloseLeavesWhatIsInHandPending(t *testing.T) {
	t.Parallel()
	client, prefix := testredis.New(t)
	stream := prefix + transport.EventsTopic
	fillStream(t, client, stream, 10)
	sub, err := NewSubscriber(client, SubscriberConfig{Consumer: "c", ClaimIdle: time.Minute})
	require.NoError(t, err)
	msgs, err := sub.Subscribe(context.Background(), stream)
	require.NoError(t, err)
	for i := range 10 {
		m := <-msgs
		if i < 4 {
			m.Ack()
		}
	}
	start := time.Now()
	require.NoError(t, sub.Close())
	require.Less(t, time.Since(start), 3*time.Second)
	for range msgs { //nolint:revive // drains until closed
	}
	p, err := client.XPending(t.Context(), stream, transport.WorkGroup).Result()
	require.NoError(t, err)
	require.EqualValues(t, 6, p.Count, "the 4 handled are acknowledged, the 6 in hand stay pending")
}

// A restart finds at once what its previous run left pending: HandBackPending
// ages those entries past ClaimIdle, and the first claim pass runs as the
// subscriber starts, not ClaimIdle/2 later (here half an hour).
func TestSubscriber_TakesBackWhatItsPreviousRunLeftPendingAtOnce(t *testing.T) {
	t.Parallel()
	client, prefix := testredis.New(t)
	stream := prefix + transport.EventsTopic
	fillStream(t, client, stream, 10)
	_, err := EnsureGroup(t.Context(), client, stream, transport.WorkGroup)
	require.NoError(t, err)
	// The previous run read 10 entries and stopped without acknowledging them.
	_, err = client.XReadGroup(t.Context(), &redis.XReadGroupArgs{
		Group: transport.WorkGroup, Consumer: "worker-1", Streams: []string{stream, ">"}, Count: 10,
	}).Result()
	require.NoError(t, err)
	claimIdle := time.Hour
	n, err := HandBackPending(t.Context(), client, stream, []string{"worker-1"}, claimIdle+time.Minute)
	require.NoError(t, err)
	require.Equal(t, 10, n)

	sub := newTestSubscriber(t, client, SubscriberConfig{Consumer: "worker-1", Batch: 50, ClaimIdle: claimIdle})
	msgs, err := sub.Subscribe(context.Background(), stream)
	require.NoError(t, err)
	for i := range 10 {
		select {
		case m := <-msgs:
			require.False(t, transport.FirstDelivery(m))
			m.Ack()
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of 10 taken back", i)
		}
	}
}
