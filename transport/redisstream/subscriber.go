package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/semaphore"

	"github.com/daybook/daybook/transport"
)

// SubscriberConfig configures one batched stream consumer.
type SubscriberConfig struct {
	// Consumer is the consumer's name in the group; keep it stable across restarts.
	Consumer string
	// Group is the consumer group; default transport.WorkGroup.
	Group string
	// Batch is how many entries one XREADGROUP or XAUTOCLAIM takes (default 256).
	Batch int
	// InFlight bounds the messages handed out and not yet acknowledged
	// (default 4 × Batch): reading stops while that many are in hand.
	InFlight int
	// ClaimIdle is how long a delivered, unacknowledged entry waits before
	// this consumer claims it (its consumer went away, or its delivery was lost).
	ClaimIdle time.Duration
	// Held, when set, is shared by the consumers of one process, so that a
	// claim never takes back an entry another of them holds. Default: its own.
	Held *HeldEntries
	// Block is how long one XREADGROUP waits for entries (default 1s): Close
	// waits for it at most that long.
	Block time.Duration
	// NackResendSleep is how long a nacked message waits before it is handed
	// out again (default 1s): at once, a failing handler would spin.
	NackResendSleep time.Duration
	Logger          *slog.Logger
}

func (c *SubscriberConfig) setDefaults() {
	if c.Group == "" {
		c.Group = transport.WorkGroup
	}
	if c.Batch <= 0 {
		c.Batch = 256
	}
	if c.InFlight <= 0 {
		c.InFlight = 4 * c.Batch
	}
	if c.Held == nil {
		c.Held = &HeldEntries{}
	}
	if c.Block <= 0 {
		c.Block = time.Second
	}
	if c.NackResendSleep <= 0 {
		c.NackResendSleep = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Subscriber is a watermill message.Subscriber on one Redis stream that
// moves entries in batches: one XREADGROUP takes up to Batch entries, one
// XACK acknowledges every message handled meanwhile, one XAUTOCLAIM takes
// back up to Batch idle entries. The router still sees one message at a time
// (its middleware and handler run per message, concurrently): only the round
// trips are shared. watermill-redisstream makes one read and one ack per
// message, which cost a third of the worker's CPU.
//
// Delivery is at least once. A message is acknowledged only after its
// handler acked it; a nacked one is handed out again after NackResendSleep;
// one held when the subscriber closes stays pending in the group, and a
// claim (here or in another process) or the next run's hand-back delivers it
// again.
type Subscriber struct {
	client redis.UniversalClient
	cfg    SubscriberConfig
	slots  *semaphore.Weighted // one per message in hand

	closing   chan struct{}
	closeOnce sync.Once
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the loops and every message in hand

	mu         sync.Mutex
	subscribed bool
	acks       []string      // handled, waiting for the next XACK
	ackReady   chan struct{} // signalled when acks grows
}

// NewSubscriber consumes as cfg.Consumer in cfg.Group on client, which it
// does not own (a blocking read holds one of its connections).
func NewSubscriber(client redis.UniversalClient, cfg SubscriberConfig) (*Subscriber, error) {
	cfg.setDefaults()
	if cfg.Consumer == "" || cfg.ClaimIdle <= 0 {
		return nil, errors.New("redisstream subscriber: Consumer and ClaimIdle are required")
	}
	if cfg.InFlight < cfg.Batch {
		return nil, fmt.Errorf("redisstream subscriber: InFlight (%d) must be at least Batch (%d)", cfg.InFlight, cfg.Batch)
	}
	return &Subscriber{
		client: client, cfg: cfg, slots: semaphore.NewWeighted(int64(cfg.InFlight)),
		closing: make(chan struct{}), ackReady: make(chan struct{}, 1),
	}, nil
}

// Subscribe implements message.Subscriber: it makes the group if missing
// (from the stream's first entry) and starts reading. One stream per
// Subscriber.
func (s *Subscriber) Subscribe(ctx context.Context, stream string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subscribed {
		return nil, errors.New("redisstream subscriber: already subscribed")
	}
	select {
	case <-s.closing:
		return nil, errors.New("redisstream subscriber: closed")
	default:
	}
	if _, err := EnsureGroup(ctx, s.client, stream, s.cfg.Group); err != nil {
		return nil, err
	}
	s.subscribed = true
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	out := make(chan *message.Message)
	var feeders sync.WaitGroup // what hands messages to out
	feeders.Add(2)
	s.wg.Add(3)
	go func() { defer s.wg.Done(); defer feeders.Done(); s.read(ctx, stream, out, &feeders) }()
	go func() { defer s.wg.Done(); defer feeders.Done(); s.claim(ctx, stream, out, &feeders) }()
	go func() { defer s.wg.Done(); s.acknowledge(ctx, stream, &feeders) }()
	go func() { feeders.Wait(); close(out) }()
	return out, nil
}

// Close stops reading, lets go of the messages in hand (they stay pending),
// acknowledges what was handled, and returns once every goroutine ended.
func (s *Subscriber) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.mu.Lock()
		cancel := s.cancel
		s.mu.Unlock()
		if cancel != nil {
			defer cancel()
		}
	})
	s.wg.Wait()
	return nil
}

// read takes new entries, as many as there are free slots (up to Batch).
func (s *Subscriber) read(ctx context.Context, stream string, out chan<- *message.Message, feeders *sync.WaitGroup) {
	for {
		n := s.reserve(ctx)
		if n == 0 {
			return
		}
		res, err := s.client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: s.cfg.Group, Consumer: s.cfg.Consumer, Streams: []string{stream, ">"},
			Count: int64(n), Block: s.cfg.Block,
		}).Result()
		var entries []redis.XMessage
		if len(res) > 0 {
			entries = res[0].Messages
		}
		s.slots.Release(int64(n - len(entries)))
		for _, e := range entries {
			s.deliver(ctx, e, true, out, feeders)
		}
		if err != nil && !errors.Is(err, redis.Nil) && !s.pause(ctx, stream, "read", err) {
			return
		}
	}
}

// claim takes back, at once and then every ClaimIdle/2, entries idle for
// ClaimIdle: those of a consumer that went away, those a previous run of
// this one left pending (HandBackPending made them idle long enough), and
// those whose delivery to this one was lost (Redis recorded it, the reply
// never came). Entries a consumer of this process holds are left to it: the
// claim only resets their idle time.
func (s *Subscriber) claim(ctx context.Context, stream string, out chan<- *message.Message, feeders *sync.WaitGroup) {
	tick := time.NewTicker(max(s.cfg.ClaimIdle/2, 10*time.Millisecond))
	defer tick.Stop()
	for pass := 0; ; pass++ {
		if pass > 0 {
			select {
			case <-s.closing:
				return
			case <-tick.C:
			}
		}
		start := "0-0"
		for {
			n := s.reserve(ctx)
			if n == 0 {
				return
			}
			entries, next, err := s.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
				Stream: stream, Group: s.cfg.Group, Consumer: s.cfg.Consumer,
				MinIdle: s.cfg.ClaimIdle, Start: start, Count: int64(n),
			}).Result()
			delivered := 0
			for _, e := range entries {
				if s.cfg.Held.has(e.ID) {
					continue
				}
				delivered++
				s.deliver(ctx, e, false, out, feeders)
			}
			s.slots.Release(int64(n - delivered))
			if err != nil {
				if !errors.Is(err, redis.Nil) && !s.pause(ctx, stream, "claim", err) {
					return
				}
				break
			}
			if next == "0-0" || next == "" || len(entries) == 0 {
				break
			}
			start = next
		}
	}
}

// reserve waits for a free slot and takes up to Batch; 0 once closing.
func (s *Subscriber) reserve(ctx context.Context) int {
	if err := s.slots.Acquire(ctx, 1); err != nil {
		return 0
	}
	n := 1
	for n < s.cfg.Batch && s.slots.TryAcquire(1) {
		n++
	}
	select {
	case <-s.closing:
		s.slots.Release(int64(n))
		return 0
	default:
		return n
	}
}

// pause reports err and waits a second before the next try; false once closing.
func (s *Subscriber) pause(ctx context.Context, stream, what string, err error) bool {
	select {
	case <-s.closing:
		return false
	default:
	}
	s.cfg.Logger.Warn("redis stream "+what+" failed; retrying", "stream", stream, "consumer", s.cfg.Consumer, "error", err)
	if strings.HasPrefix(err.Error(), "NOGROUP") {
		if _, err := EnsureGroup(ctx, s.client, stream, s.cfg.Group); err != nil {
			s.cfg.Logger.Warn("recreate consumer group", "stream", stream, "error", err)
		}
	}
	select {
	case <-s.closing:
		return false
	case <-time.After(time.Second):
		return true
	}
}

// deliver hands one entry out (its slot already taken) and follows it until
// it is acknowledged, in a goroutine of its own: the entries of a batch are
// handled concurrently. first: XREADGROUP read it as new (">"), so no
// consumer had it before.
func (s *Subscriber) deliver(ctx context.Context, e redis.XMessage, first bool, out chan<- *message.Message, feeders *sync.WaitGroup) {
	msg, _ := Marshaller{}.Unmarshal(e.Values) // never fails: a malformed entry is flagged
	transport.SetFirstDelivery(msg, first)
	s.cfg.Held.add(e.ID)
	s.wg.Add(1)
	feeders.Add(1)
	go func() {
		defer s.wg.Done()
		defer feeders.Done()
		if s.follow(ctx, msg, out) {
			s.queueAck(e.ID) // the slot and the hold end once XACK is done
			return
		}
		s.cfg.Held.remove(e.ID)
		s.slots.Release(1)
	}()
}

// follow hands msg out until it is acked (true), or the subscriber closes (false).
func (s *Subscriber) follow(ctx context.Context, msg *message.Message, out chan<- *message.Message) bool {
	for {
		msg.SetContext(ctx)
		select {
		case out <- msg:
		case <-s.closing:
			return false
		}
		select {
		case <-msg.Acked():
			return true
		case <-msg.Nacked():
		case <-s.closing:
			select {
			case <-msg.Acked(): // acked before the close: acknowledge it
				return true
			default:
				return false
			}
		}
		select {
		case <-time.After(s.cfg.NackResendSleep):
		case <-s.closing:
			return false
		}
		msg = msg.Copy() // a message is acked or nacked once: hand out a fresh one
		transport.SetFirstDelivery(msg, false)
	}
}

// queueAck adds id to the next XACK.
func (s *Subscriber) queueAck(id string) {
	s.mu.Lock()
	s.acks = append(s.acks, id)
	s.mu.Unlock()
	select {
	case s.ackReady <- struct{}{}:
	default:
	}
}

// acknowledge sends XACKs: each carries every message handled since the
// previous one, so under load one round trip acknowledges hundreds. Once
// closing, it waits for the messages in hand to be let go and flushes what
// they left.
func (s *Subscriber) acknowledge(ctx context.Context, stream string, feeders *sync.WaitGroup) {
	for {
		select {
		case <-s.ackReady:
			for s.flushAcks(ctx, stream) {
			}
		case <-s.closing:
			feeders.Wait()
			for s.flushAcks(ctx, stream) {
			}
			return
		}
	}
}

// ackChunk bounds the ids of one XACK.
const ackChunk = 1000

// flushAcks acknowledges up to ackChunk queued ids and reports whether it
// should be called again. Ids whose XACK failed are put back and tried again
// after a pause; once closing they are left pending, to be delivered again
// (at least once).
func (s *Subscriber) flushAcks(ctx context.Context, stream string) bool {
	s.mu.Lock()
	ids := s.acks
	if len(ids) > ackChunk {
		ids, s.acks = ids[:ackChunk:ackChunk], ids[ackChunk:]
	} else {
		s.acks = nil
	}
	s.mu.Unlock()
	if len(ids) == 0 {
		return false
	}
	// Not ctx: the last flush runs after Close cancelled it.
	ackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	err := s.client.XAck(ackCtx, stream, s.cfg.Group, ids...).Err()
	cancel()
	if err != nil {
		s.cfg.Logger.Warn("acknowledge stream entries; retrying", "stream", stream, "count", len(ids), "error", err)
		select {
		case <-s.closing:
			return false
		case <-time.After(100 * time.Millisecond):
		}
		s.mu.Lock()
		s.acks = append(ids, s.acks...)
		s.mu.Unlock()
		return true
	}
	for _, id := range ids {
		s.cfg.Held.remove(id)
	}
	s.slots.Release(int64(len(ids)))
	return true
}

// HeldEntries are the stream entries the consumers of one process have in
// hand: handed out and not yet acknowledged. A claim never delivers one of
// them a second time.
type HeldEntries struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

func (h *HeldEntries) add(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ids == nil {
		h.ids = map[string]struct{}{}
	}
	h.ids[id] = struct{}{}
}

func (h *HeldEntries) remove(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.ids, id)
}

// has reports whether a consumer of this process holds entry id.
func (h *HeldEntries) has(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.ids[id]
	return ok
}
