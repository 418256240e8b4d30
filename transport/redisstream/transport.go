package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/transport"
)

// Config configures the stream transport of one process.
type Config struct {
	Topics transport.Topics
	// Name is this process's consumer name stem (the host name): its
	// consumers are <Name>-<slot>-<i>, the slot leased per process.
	Name string
	// Consumers is how many stream consumers read the work stream; each
	// reads Batch entries at a time and holds up to InFlight (see
	// SubscriberConfig for the defaults).
	Consumers int
	Batch     int
	InFlight  int
	// ClaimIdle is how long a delivered, unacknowledged message waits before
	// another consumer claims it.
	ClaimIdle time.Duration
	// SlotLeaseTTL is how long a crashed process's slot stays taken (default 15s).
	SlotLeaseTTL time.Duration
	// TrimInterval is how often acknowledged entries are trimmed from the
	// work and log streams (default 1m); GroupCheckInterval how often lost
	// consumer groups are looked for (default 5s).
	TrimInterval       time.Duration
	GroupCheckInterval time.Duration
	// LogMaxLen bounds the event log's stream (default 100,000 messages, each
	// up to 128 KiB): a backstop for a group that stops reading, since
	// what every group acknowledged is trimmed anyway.
	LogMaxLen int64
	Logger    *slog.Logger
}

func (c *Config) setDefaults() {
	if c.SlotLeaseTTL == 0 {
		c.SlotLeaseTTL = 15 * time.Second
	}
	if c.TrimInterval == 0 {
		c.TrimInterval = time.Minute
	}
	if c.GroupCheckInterval == 0 {
		c.GroupCheckInterval = 5 * time.Second
	}
	if c.LogMaxLen == 0 {
		c.LogMaxLen = 100_000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Transport is the worker's side of Redis Streams: transport.Work on the
// work stream and transport.EventLog on the log stream.
type Transport struct {
	client redis.UniversalClient
	cfg    Config
	// pub appends to any stream, a batch in one round trip (the relay's).
	pub *PipelinedPublisher

	lease *slotLease
	// names are this process's work consumers (<Name>-<slot>-<i>), set by Open.
	names []string
	// held are the work-stream entries this process's consumers have in
	// hand: a claim by one of them never takes what another holds.
	held HeldEntries

	mu      sync.Mutex
	groups  map[string]string // stream → group this process consumes
	clients []*redis.Client   // the consumers' own, closed by Close
}

var (
	_ transport.Work     = (*Transport)(nil)
	_ transport.EventLog = (*Transport)(nil)
)

// New builds the transport on client.
func New(client redis.UniversalClient, cfg Config) (*Transport, error) {
	cfg.setDefaults()
	if cfg.Name == "" || cfg.Consumers <= 0 || cfg.ClaimIdle <= 0 {
		return nil, errors.New("redisstream: Name, Consumers and ClaimIdle are required")
	}
	pub := NewPipelinedPublisher(client, map[string]int64{cfg.Topics.Named(transport.LogTopic): cfg.LogMaxLen})
	return &Transport{client: client, cfg: cfg, pub: pub, groups: map[string]string{}}, nil
}

// Open leases this process's slot and hands back at once what a previous run
// under the same consumer names left pending.
func (t *Transport) Open(ctx context.Context) error {
	lease, err := leaseSlot(ctx, t.client, t.cfg.Topics.Prefix, t.cfg.Name, t.cfg.SlotLeaseTTL, t.cfg.Logger)
	if err != nil {
		return err
	}
	t.lease = lease
	t.names = make([]string, t.cfg.Consumers)
	for i := range t.names {
		t.names[i] = t.consumerName(strconv.Itoa(i))
	}
	n, err := HandBackPending(ctx, t.client, t.cfg.Topics.Events(), t.names, t.cfg.ClaimIdle+time.Minute)
	if err != nil {
		lease.release()
		return err
	}
	if n > 0 {
		t.cfg.Logger.Info("taking back messages a previous run left pending", "count", n)
	}
	return nil
}

// Close frees the slot; call it after the router closed, when no consumer
// of this slot is left.
func (t *Transport) Close() error {
	if t.lease != nil {
		t.lease.release()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.clients {
		_ = c.Close()
	}
	t.clients = nil
	return nil
}

// consumerClient is a small client of one consumer's own: its blocking read
// holds a connection for up to a second, and many consumers must not starve
// the shared pool (the gate, the dedup pipelines) nor queue for it at close.
func (t *Transport) consumerClient() redis.UniversalClient {
	shared, ok := t.client.(*redis.Client)
	if !ok {
		return t.client
	}
	opts := *shared.Options()
	opts.PoolSize = 3 // the blocking read, acknowledgements, claims
	own := redis.NewClient(&opts)
	t.mu.Lock()
	t.clients = append(t.clients, own)
	t.mu.Unlock()
	return own
}

// Slot is this process's leased slot (valid after Open).
func (t *Transport) Slot() int { return t.lease.slot }

// consumerName is this process's own (its slot) and stable across clean
// restarts, so a restarted worker finds what its previous run left pending.
func (t *Transport) consumerName(suffix string) string {
	return fmt.Sprintf("%s-%d-%s", t.cfg.Name, t.lease.slot, suffix)
}

// Consumers are Config.Consumers batched consumers of the work stream.
func (t *Transport) Consumers() ([]transport.Consumer, error) {
	if t.lease == nil {
		return nil, errors.New("redisstream: Consumers before Open")
	}
	t.consumes(t.cfg.Topics.Events(), transport.WorkGroup)
	var out []transport.Consumer
	for _, name := range t.names {
		sub, err := NewSubscriber(t.consumerClient(), SubscriberConfig{
			Consumer: name, Batch: t.cfg.Batch, InFlight: t.cfg.InFlight,
			ClaimIdle: t.cfg.ClaimIdle, Held: &t.held, Logger: t.cfg.Logger,
		})
		if err != nil {
			return nil, err
		}
		out = append(out, transport.Consumer{Name: "ingest-" + name, Topic: t.cfg.Topics.Events(), Subscriber: sub})
	}
	return out, nil
}

// Redriven is nil: a stream never gives a message up by itself.
func (t *Transport) Redriven() ([]transport.Consumer, error) { return nil, nil }

// Publisher publishes to any stream by name (replay onto the work stream or
// the log stream).
func (t *Transport) Publisher() message.Publisher { return t.pub }

// PublishDead appends msg to the dead-letter stream.
func (t *Transport) PublishDead(msg *message.Message) error {
	if err := t.pub.Publish(t.cfg.Topics.Dead(), msg); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	return nil
}

// Depth is the work stream's entries the group has not yet read plus those
// it holds unacknowledged.
func (t *Transport) Depth(ctx context.Context) (int64, error) {
	lag, pending, err := StreamDepth(ctx, t.client, t.cfg.Topics.Events(), transport.WorkGroup)
	return lag + pending, err
}

// Redrivable is 0: there is no wire dead-letter queue to move from.
func (t *Transport) Redrivable(context.Context) (int64, error) { return 0, nil }

// Services trim the work and log streams and recreate the consumer groups
// Redis lost.
func (t *Transport) Services() []transport.Service {
	return []transport.Service{
		newTrimmer(t.client, t.cfg.Topics.Events(), t.cfg.TrimInterval, t.cfg.Logger),
		newTrimmer(t.client, t.cfg.Topics.Named(transport.LogTopic), t.cfg.TrimInterval, t.cfg.Logger),
		newGroupKeeper(t.client, t.consumedGroups, t.cfg.GroupCheckInterval, t.cfg.Logger),
	}
}

// LogPublisher is the relay's: its topics land in this deployment's streams.
func (t *Transport) LogPublisher() message.Publisher {
	return PrefixedPublisher{Prefix: t.cfg.Topics.Prefix, Pub: t.pub}
}

// Subscribe reads the log stream in group, as consumer <Name>-<slot>-<consumer>.
// Redis may be down when the worker starts (SQS mode keeps the work queue
// elsewhere): the subscription then comes up once Redis does.
func (t *Transport) Subscribe(group, consumer string) (transport.Consumer, error) {
	if t.lease == nil {
		return transport.Consumer{}, errors.New("redisstream: Subscribe before Open")
	}
	stream := t.cfg.Topics.Named(transport.LogTopic)
	t.consumes(stream, group)
	sub, err := NewSubscriber(t.consumerClient(), SubscriberConfig{
		Consumer: t.consumerName(consumer), Group: group, Batch: t.cfg.Batch, InFlight: t.cfg.InFlight,
		ClaimIdle: t.cfg.ClaimIdle, Logger: t.cfg.Logger,
	})
	if err != nil {
		return transport.Consumer{}, err
	}
	eventually := NewEventually(sub, time.Second, func(err error) {
		t.cfg.Logger.Warn("cannot subscribe to the event log yet; retrying", "group", group, "error", err)
	})
	return transport.Consumer{Name: group, Topic: stream, Subscriber: eventually}, nil
}

func (t *Transport) consumes(stream, group string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.groups[stream] = group
}

func (t *Transport) consumedGroups() map[string]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]string, len(t.groups))
	for s, g := range t.groups {
		out[s] = g
	}
	return out
}
