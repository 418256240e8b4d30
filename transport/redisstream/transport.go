package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// Consumers is how many stream consumers read the work stream.
	Consumers int
	// ClaimIdle is how long a delivered, unacknowledged message waits before
	// another consumer claims it.
	ClaimIdle time.Duration
	// SlotLeaseTTL is how long a crashed process's slot stays taken (default 15s).
	SlotLeaseTTL time.Duration
	// TrimInterval is how often acknowledged entries are trimmed from the
	// work stream (default 1m); GroupCheckInterval how often lost consumer
	// groups are looked for (default 5s).
	TrimInterval       time.Duration
	GroupCheckInterval time.Duration
	// LogMaxLen bounds the event log's stream (default 1,000,000).
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
		c.LogMaxLen = 1_000_000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Transport is the worker's side of Redis Streams: transport.Work on the
// work stream and transport.EventLog on the log stream.
type Transport struct {
	client redis.UniversalClient
	// opts builds one client per subscriber: a redisstream subscriber closes
	// its client when it closes.
	opts *redis.Options
	cfg  Config
	// pub appends to any stream, a batch in one round trip (the relay's).
	pub *PipelinedPublisher

	lease     *slotLease
	startedAt time.Time
	// names are this process's work consumers (<Name>-<slot>-<i>), set by Open.
	names []string
	// held are the messages this process's work consumers have decoded and
	// not yet handled successfully (in a handler, or waiting to be re-sent
	// after a nack), for the claim veto.
	held heldMessages

	mu     sync.Mutex
	groups map[string]string // stream → group this process consumes
}

var (
	_ transport.Work     = (*Transport)(nil)
	_ transport.EventLog = (*Transport)(nil)
)

// New builds the transport on client; opts are client's options.
func New(client redis.UniversalClient, opts *redis.Options, cfg Config) (*Transport, error) {
	cfg.setDefaults()
	if cfg.Name == "" || cfg.Consumers <= 0 || cfg.ClaimIdle <= 0 {
		return nil, errors.New("redisstream: Name, Consumers and ClaimIdle are required")
	}
	pub := NewPipelinedPublisher(client, map[string]int64{cfg.Topics.Named(transport.LogTopic): cfg.LogMaxLen})
	return &Transport{client: client, opts: opts, cfg: cfg, pub: pub, groups: map[string]string{}}, nil
}

// Open leases this process's slot and hands back at once what a previous run
// under the same consumer names left pending.
func (t *Transport) Open(ctx context.Context) error {
	lease, err := leaseSlot(ctx, t.client, t.cfg.Topics.Prefix, t.cfg.Name, t.cfg.SlotLeaseTTL, t.cfg.Logger)
	if err != nil {
		return err
	}
	t.lease, t.startedAt = lease, time.Now()
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
	return nil
}

// Slot is this process's leased slot (valid after Open).
func (t *Transport) Slot() int { return t.lease.slot }

// consumerName is this process's own (its slot) and stable across clean
// restarts, so a restarted worker finds what its previous run left pending.
func (t *Transport) consumerName(suffix string) string {
	return fmt.Sprintf("%s-%d-%s", t.cfg.Name, t.lease.slot, suffix)
}

// Consumers are Config.Consumers stream consumers of the work stream.
func (t *Transport) Consumers() ([]transport.Consumer, error) {
	if t.lease == nil {
		return nil, errors.New("redisstream: Consumers before Open")
	}
	t.consumes(t.cfg.Topics.Events(), transport.WorkGroup)
	var out []transport.Consumer
	for _, name := range t.names {
		sub, err := NewRedisSubscriber(t.opts, SubscriberConfig{
			Consumer: name, ClaimIdle: t.cfg.ClaimIdle, ShouldClaim: t.shouldClaim,
			OnRead: func(uuid string) { t.held.add(name, uuid) },
		}, transport.Logger(t.cfg.Logger))
		if err != nil {
			return nil, err
		}
		out = append(out, transport.Consumer{
			Name: "ingest-" + name, Topic: t.cfg.Topics.Events(), Subscriber: sub,
			Middleware: []message.HandlerMiddleware{t.releaseHandled(name)},
		})
	}
	return out, nil
}

// shouldClaim vetoes claims. redisstream claims any message idle for
// ClaimIdle, even one a live consumer still holds: in a handler (a breaker
// pause has no bound), waiting for redisstream to re-send it after a nack, or
// read from Redis behind those and not yet decoded (each consumer handles one
// message at a time). A message pending on one of this process's consumers is
// claimed when it was delivered before the process started (a previous run
// left it), or when its consumer holds nothing: Redis recorded its delivery
// but the reply never arrived (connection cut, Redis killed), and nothing
// else would ever take it back.
func (t *Transport) shouldClaim(xp redis.XPendingExt) bool {
	if !slices.Contains(t.names, xp.Consumer) || xp.Idle > time.Since(t.startedAt) {
		return true
	}
	if t.held.busy(xp.Consumer) {
		return false
	}
	uuid, err := t.entryUUID(xp.ID)
	if err != nil || uuid == "" {
		// Unreadable now (ask again at the next pass), or an entry without
		// a uuid, which cannot be told from one being handled.
		return false
	}
	return !t.held.has(uuid)
}

// releaseHandled forgets a message once handled: it is acknowledged next. A
// failed one stays held: redisstream re-sends it after a pause.
func (t *Transport) releaseHandled(consumer string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil {
				t.held.remove(consumer, msg.UUID)
			}
			return out, err
		}
	}
}

// heldMessages are the messages each consumer of this process holds.
type heldMessages struct {
	mu         sync.Mutex
	byUUID     map[string]string // uuid → consumer
	byConsumer map[string]int
}

func (m *heldMessages) add(consumer, uuid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byUUID == nil {
		m.byUUID, m.byConsumer = map[string]string{}, map[string]int{}
	}
	if _, ok := m.byUUID[uuid]; !ok {
		m.byUUID[uuid] = consumer
		m.byConsumer[consumer]++
	}
}

func (m *heldMessages) remove(consumer, uuid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byUUID[uuid]; ok {
		delete(m.byUUID, uuid)
		if m.byConsumer[consumer]--; m.byConsumer[consumer] <= 0 {
			delete(m.byConsumer, consumer)
		}
	}
}

func (m *heldMessages) has(uuid string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.byUUID[uuid]
	return ok
}

func (m *heldMessages) busy(consumer string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byConsumer[consumer] > 0
}

// entryUUID reads the message uuid of a work-stream entry ("" if it is gone).
func (t *Transport) entryUUID(id string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	entries, err := t.client.XRange(ctx, t.cfg.Topics.Events(), id, id).Result()
	if err != nil || len(entries) == 0 {
		return "", err
	}
	uuid, _ := entries[0].Values[FieldUUID].(string)
	return uuid, nil
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

// Services trim the work stream and recreate the consumer groups Redis lost.
func (t *Transport) Services() []transport.Service {
	return []transport.Service{
		newTrimmer(t.client, t.cfg.Topics.Events(), t.cfg.TrimInterval, t.cfg.Logger),
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
	sub, err := NewRedisSubscriber(t.opts, SubscriberConfig{Consumer: t.consumerName(consumer), Group: group, ClaimIdle: t.cfg.ClaimIdle}, transport.Logger(t.cfg.Logger))
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
