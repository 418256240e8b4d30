// Package transporttest is the conformance suite of transport.Work, in the
// manner of watermill's pub/sub tests: every wire runs the same subtests
// against its own queues, so that the core can rely on the contract whichever
// wire carries the work queue. For tests only.
package transporttest

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/transport"
)

// Fixture is one fresh work queue of the wire under test.
type Fixture struct {
	// New builds a new process's Work on the same queue as every other New
	// of this fixture (same topics and prefix; for Redis the same consumer
	// name stem). The suite opens and closes it.
	New func(t *testing.T) transport.Work
	// Topics are the names the Works of this fixture use.
	Topics transport.Topics
	// PublishMalformed puts one message on the work queue that the wire
	// cannot decode properly.
	PublishMalformed func(t *testing.T)
	// RedeliveryAfterCrash is how long the message a crashed consumer held
	// may take to come back to a new process.
	RedeliveryAfterCrash time.Duration
}

const (
	// batch is how many messages the subtests that need many publish: SQS
	// emulators are slow.
	batch = 10
	// within bounds every wait for a delivery that should come promptly: it
	// only decides how long a failing run takes, never whether it fails.
	within = 20 * time.Second
	// quiet is how long a subtest watches for deliveries that must not come.
	quiet = 2 * time.Second
	tick  = 20 * time.Millisecond
	// routerCloseTimeout bounds how long closing a process waits for its handlers.
	routerCloseTimeout = 10 * time.Second
)

// Run runs the conformance subtests, each on a queue of its own from
// newFixture, in parallel.
func Run(t *testing.T, newFixture func(t *testing.T) Fixture) {
	t.Helper()
	subtests := []struct {
		name string
		run  func(t *testing.T, f Fixture)
	}{
		{"AtLeastOnce_EveryMessageArrivesIntactAndAckedOnesStayGone", testAtLeastOnce},
		{"Nack_RedeliversUntilAcked", testNackRedelivers},
		{"InHand_NotDeliveredTwiceWhileHandled", testInHand},
		{"RedeliveryAfterCrash_AnotherProcessGetsTheUnackedMessage", testRedeliveryAfterCrash},
		{"RedeliveryAfterRestart_TheNextProcessGetsTheUnackedMessage", testRedeliveryAfterRestart},
		{"Poison_FlaggedAndTheSubscriberKeepsDelivering", testPoison},
		{"DeadLetters_PublishDeadAndRedriven", testDeadLetters},
		{"Replay_SameUUIDIsDeliveredAgain", testReplay},
		{"Depth_CountsWaitingMessagesThenDrainsToZero", testDepth},
	}
	for _, st := range subtests {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			require.NotNil(t, f.New, "Fixture.New")
			require.NotNil(t, f.PublishMalformed, "Fixture.PublishMalformed")
			require.Positive(t, f.RedeliveryAfterCrash, "Fixture.RedeliveryAfterCrash")
			require.NotEmpty(t, f.Topics.Events(), "Fixture.Topics")
			st.run(t, f)
		})
	}
}

// testAtLeastOnce: messages published before the consumers come up and while
// they run all arrive, with their payload and metadata as sent; once acked,
// none is delivered again and the queue drains.
func testAtLeastOnce(t *testing.T, f Fixture) {
	work := newWork(t, f)
	sent := newMessages(batch, "at-least-once")
	// Half wait in the queue before the consumers subscribe, half arrive live.
	publish(t, work, f, sent[:batch/2]...)
	rec := &recorder{}
	startProcess(t, work, rec.handler(nil))
	publish(t, work, f, sent[batch/2:]...)

	rec.waitAcked(t, uuids(sent)...)
	for _, m := range sent {
		d := rec.first(m.UUID)
		require.Equal(t, string(m.Payload), string(d.payload), "payload of %s", m.UUID)
		requireMetadataSubset(t, m.Metadata, d.metadata, m.UUID)
		require.Empty(t, d.metadata.Get(transport.MetaDecodeError), "a well-formed message is not flagged")
	}
	time.Sleep(quiet)
	for _, m := range sent {
		require.Equal(t, 1, rec.count(m.UUID), "message %s was acked on its first delivery and must not come back", m.UUID)
	}
	requireDepthEventually(t, work, 0)
}

// testNackRedelivers: a message whose handler fails comes back and is acked
// on a later delivery; the queue then drains and the deliveries stop.
// Deliveries beyond the second are duplicates the at-least-once contract
// allows, but a live consumer's messages are never claimed from it, so none
// happens here.
func testNackRedelivers(t *testing.T, f Fixture) {
	work := newWork(t, f)
	sent := newMessages(3, "nack")
	rec := &recorder{}
	failed := sync.Map{}
	startProcess(t, work, rec.handler(func(msg *message.Message) error {
		if _, again := failed.LoadOrStore(msg.UUID, true); !again {
			return fmt.Errorf("first delivery of %s fails", msg.UUID)
		}
		return nil
	}))
	publish(t, work, f, sent...)

	rec.waitAcked(t, uuids(sent)...)
	for _, m := range sent {
		ds := rec.deliveries(m.UUID)
		require.GreaterOrEqual(t, len(ds), 2, "a nacked message is delivered again")
		require.Error(t, ds[0].err, "the first delivery failed")
		require.Equal(t, string(m.Payload), string(ds[1].payload), "the redelivery carries the payload")
		requireMetadataSubset(t, m.Metadata, ds[1].metadata, m.UUID)
	}
	requireDepthEventually(t, work, 0)
	rec.waitSettled(t)
	for _, m := range sent {
		require.Equal(t, 2, rec.count(m.UUID), "a message nacked once is delivered twice: %s", rec.describe(m.UUID))
	}
}

// testInHand: a message a live consumer holds in its handler for longer than
// a dead consumer's message takes to come back (the consumer's middleware
// keeps it in hand) is not delivered to anyone else meanwhile, and the other
// consumers go on with the rest of the queue, each message once (one the
// holding consumer read behind it waits for it).
func testInHand(t *testing.T, f Fixture) {
	work := newWork(t, f)
	held := newMessages(1, "held")[0]
	others := newMessages(3, "beside-held")
	hold := f.RedeliveryAfterCrash + time.Second
	release := make(chan struct{})
	var released sync.Once
	releaseHeld := func() { released.Do(func() { close(release) }) }
	holding := make(chan struct{})
	var held1 sync.Once
	rec := &recorder{}
	startProcess(t, work, rec.handler(func(msg *message.Message) error {
		if msg.UUID == held.UUID {
			held1.Do(func() { close(holding) })
			<-release
		}
		return nil
	}))
	t.Cleanup(releaseHeld) // runs before the process stops: a failed test must not leave it blocked
	publish(t, work, f, held)
	select {
	case <-holding:
	case <-time.After(within):
		t.Fatal("the message to hold was not delivered")
	}
	heldAt := time.Now()
	publish(t, work, f, others...)
	time.Sleep(time.Until(heldAt.Add(hold)))
	require.Equal(t, 1, rec.count(held.UUID), "the message in hand was delivered again while held for %s", hold)
	releaseHeld()

	// A message read from the queue behind the held one, by the same
	// consumer, waits for it rather than being delivered twice.
	rec.waitAcked(t, append(uuids(others), held.UUID)...)
	requireDepthEventually(t, work, 0)
	rec.waitSettled(t)
	require.Equal(t, 1, rec.count(held.UUID), "the message in hand was delivered again: %s", rec.describe(held.UUID))
	for _, m := range others {
		require.Equal(t, 1, rec.count(m.UUID), "a message acked at once is delivered once: %s", rec.describe(m.UUID))
	}
}

// testRedeliveryAfterCrash: a process receives a message and dies without
// acking it and without closing its Work (kill -9); a new process gets the
// message within RedeliveryAfterCrash.
func testRedeliveryAfterCrash(t *testing.T, f Fixture) {
	crashed := newWork(t, f) // closed only at the end of the test: it died
	sent := newMessages(1, "crash")[0]
	publish(t, crashed, f, sent)
	held := receiveAndDie(t, crashed)
	require.Equal(t, sent.UUID, held.UUID)
	diedAt := time.Now()

	requireRedelivered(t, f, sent, diedAt)
}

// testRedeliveryAfterRestart: a process receives a message, stops without
// acking it and closes its Work; the next process gets the message within
// RedeliveryAfterCrash.
func testRedeliveryAfterRestart(t *testing.T, f Fixture) {
	first := newWork(t, f)
	sent := newMessages(1, "restart")[0]
	publish(t, first, f, sent)
	held := receiveAndDie(t, first)
	require.Equal(t, sent.UUID, held.UUID)
	require.NoError(t, first.Close())
	stoppedAt := time.Now()

	requireRedelivered(t, f, sent, stoppedAt)
}

// requireRedelivered starts a new process of f and requires sent to reach it
// within RedeliveryAfterCrash of since, intact; it is then acked for good.
func requireRedelivered(t *testing.T, f Fixture, sent *message.Message, since time.Time) {
	t.Helper()
	next := newWork(t, f)
	rec := &recorder{}
	startProcess(t, next, rec.handler(nil))
	// The bound runs from the death, the new process's start included.
	require.Eventually(t, func() bool { return rec.ackedAll(sent.UUID) }, time.Until(since.Add(f.RedeliveryAfterCrash)), tick,
		"the message the dead process held did not reach the new process within %s", f.RedeliveryAfterCrash)
	t.Logf("redelivered %s after the process went away", time.Since(since).Round(10*time.Millisecond))
	d := rec.first(sent.UUID)
	require.Equal(t, string(sent.Payload), string(d.payload))
	requireMetadataSubset(t, sent.Metadata, d.metadata, sent.UUID)
	requireDepthEventually(t, next, 0)
}

// testPoison: a message the wire cannot decode reaches the handler flagged
// with MetaDecodeError, and the subscriber goes on delivering good messages.
func testPoison(t *testing.T, f Fixture) {
	work := newWork(t, f)
	rec := &recorder{}
	startProcess(t, work, rec.handler(nil))
	f.PublishMalformed(t)
	require.Eventually(t, func() bool { return len(rec.flagged()) > 0 }, within, tick,
		"the malformed message never reached the handler flagged with %s", transport.MetaDecodeError)
	poison := rec.flagged()[0]
	require.NotEmpty(t, poison.uuid, "a flagged message still has a uuid")
	t.Logf("malformed message delivered as %s: %s", poison.uuid, poison.metadata.Get(transport.MetaDecodeError))

	good := newMessages(2, "after-poison")
	publish(t, work, f, good...)
	rec.waitAcked(t, uuids(good)...)
	for _, m := range good {
		require.Empty(t, rec.first(m.UUID).metadata.Get(transport.MetaDecodeError))
	}
	requireDepthEventually(t, work, 0)
}

// testDeadLetters: PublishDead accepts a dead letter without touching the
// work queue; Redriven's consumers, if the wire has any, say where their
// letters are replayed onto and why the wire gave them up.
func testDeadLetters(t *testing.T, f Fixture) {
	work := newWork(t, f)
	ctx := t.Context()
	require.NoError(t, work.Open(ctx))
	dead := newMessages(1, "dead")[0]
	dead.Metadata.Set("dead_reason", "conformance")
	require.NoError(t, work.PublishDead(dead))

	redriven, err := work.Redriven()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, c := range redriven {
		require.NotEmpty(t, c.Name)
		require.False(t, names[c.Name], "consumer name %q is not unique", c.Name)
		names[c.Name] = true
		require.NotEmpty(t, c.Topic, c.Name)
		require.NotNil(t, c.Subscriber, c.Name)
		// Only the work queue is consumed here: its letters go back onto it.
		require.Equal(t, f.Topics.Events(), c.ReplayTopic, c.Name)
		require.NotEmpty(t, c.DeadReason, c.Name)
		require.NoError(t, c.Subscriber.Close(), c.Name)
	}
	t.Logf("%d redriven consumer(s)", len(redriven))

	n, err := work.Redrivable(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "nothing was redriven on a fresh queue")
	depth, err := work.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, depth, "a dead letter is not work")
}

// testReplay: a message consumed and acked, then published again with the
// same uuid (a dead letter's replay), is delivered again.
func testReplay(t *testing.T, f Fixture) {
	work := newWork(t, f)
	rec := &recorder{}
	startProcess(t, work, rec.handler(nil))
	sent := newMessages(1, "replay")[0]
	publish(t, work, f, sent)
	rec.waitAcked(t, sent.UUID)
	requireDepthEventually(t, work, 0)

	again := message.NewMessage(sent.UUID, sent.Payload)
	again.Metadata = maps.Clone(sent.Metadata)
	publish(t, work, f, again)
	require.Eventually(t, func() bool { return rec.count(sent.UUID) >= 2 }, within, tick,
		"the replayed message (same uuid) was not delivered again")
	ds := rec.deliveries(sent.UUID)
	require.Equal(t, string(sent.Payload), string(ds[1].payload))
	requireMetadataSubset(t, sent.Metadata, ds[1].metadata, sent.UUID)
	requireDepthEventually(t, work, 0)
}

// testDepth: messages published while no consumer runs count in Depth; once
// consumed and acked, Depth comes back to 0. The queue has been consumed
// before (a worker ran and stopped), as in any deployment.
func testDepth(t *testing.T, f Fixture) {
	before := newWork(t, f)
	stop := startProcess(t, before, (&recorder{}).handler(nil))
	stop()
	require.NoError(t, before.Close())

	work := newWork(t, f)
	requireDepthEventually(t, work, 0)
	const k = 5
	sent := newMessages(k, "depth")
	publish(t, work, f, sent...)
	var last int64
	require.Eventually(t, func() bool {
		n, err := work.Depth(t.Context())
		last = n
		return err == nil && n >= k
	}, within, tick, "Depth never reached the %d messages published", k)
	t.Logf("Depth with %d messages waiting: %d", k, last)

	rec := &recorder{}
	startProcess(t, work, rec.handler(nil))
	rec.waitAcked(t, uuids(sent)...)
	requireDepthEventually(t, work, 0)
}

// newWork is a new process's Work of f, closed when the test ends unless the
// test closed it before.
func newWork(t *testing.T, f Fixture) transport.Work {
	t.Helper()
	w := &onceClosed{Work: f.New(t)}
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	return w
}

// onceClosed closes its Work once: a test may close it itself, before the
// cleanup does.
type onceClosed struct {
	transport.Work
	once sync.Once
	err  error
}

func (w *onceClosed) Close() error {
	w.once.Do(func() { w.err = w.Work.Close() })
	return w.err
}

// startProcess opens work and runs a router with handler on each of its
// consumers (their own middleware first) and its services, as the worker
// does. The returned stop (also run at cleanup) closes the router and stops
// the services, but leaves work open.
func startProcess(t *testing.T, work transport.Work, handler message.NoPublishHandlerFunc) (stop func()) {
	t.Helper()
	// Not t.Context: the subscribers must be closed before their context ends.
	ctx := context.Background()
	require.NoError(t, work.Open(ctx))
	consumers, err := work.Consumers()
	require.NoError(t, err)
	require.NotEmpty(t, consumers, "a Work has at least one consumer")
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: routerCloseTimeout}, watermill.NopLogger{})
	require.NoError(t, err)
	names := map[string]bool{}
	for _, c := range consumers {
		require.NotEmpty(t, c.Name)
		require.False(t, names[c.Name], "consumer name %q is not unique", c.Name)
		names[c.Name] = true
		require.NotNil(t, c.Subscriber, c.Name)
		require.Empty(t, c.ReplayTopic, "a work consumer has no replay topic")
		h := router.AddConsumerHandler(c.Name, c.Topic, c.Subscriber, handler)
		h.AddMiddleware(c.Middleware...)
	}
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	select {
	case <-router.Running():
	case err := <-done:
		t.Fatalf("router stopped before it ran: %v", err)
	case <-time.After(within):
		_ = router.Close()
		t.Fatal("router did not start")
	}
	services := work.Services()
	for _, s := range services {
		s.Start(ctx)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			for _, s := range services {
				s.Stop()
			}
			require.NoError(t, router.Close())
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(routerCloseTimeout):
				t.Error("router.Run did not return after Close")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// receiveAndDie opens work, subscribes its consumers directly (no router, no
// handler), takes the first message delivered, and closes the subscribers
// without acking or nacking it: the process died holding it.
func receiveAndDie(t *testing.T, work transport.Work) *message.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, work.Open(ctx))
	consumers, err := work.Consumers()
	require.NoError(t, err)
	got := make(chan *message.Message)
	dead := make(chan struct{})
	var fanIn sync.WaitGroup
	closeAll := func() {
		close(dead)
		for _, c := range consumers {
			require.NoError(t, c.Subscriber.Close(), c.Name)
		}
		fanIn.Wait()
	}
	for _, c := range consumers {
		msgs, err := c.Subscriber.Subscribe(ctx, c.Topic)
		if err != nil {
			closeAll()
			require.NoError(t, err, c.Name)
		}
		fanIn.Go(func() {
			for m := range msgs {
				select {
				case got <- m:
				case <-dead:
					return
				}
			}
		})
	}
	var held *message.Message
	select {
	case held = <-got:
	case <-time.After(within):
	}
	closeAll()
	require.NotNil(t, held, "no message delivered")
	return held
}

// newMessages are n messages with distinct uuids, a payload and metadata of
// their own.
func newMessages(n int, tag string) []*message.Message {
	out := make([]*message.Message, n)
	for i := range out {
		id := watermill.NewUUID()
		m := message.NewMessage(id, fmt.Appendf(nil, `{"n":%d,"tag":%q,"id":%q}`, i, tag, id))
		m.Metadata.Set("correlation_id", "corr-"+id)
		m.Metadata.Set("n", strconv.Itoa(i))
		m.Metadata.Set("tag", tag)
		out[i] = m
	}
	return out
}

func uuids(msgs []*message.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.UUID
	}
	return out
}

// publish sends msgs onto the work topic through work's Publisher.
func publish(t *testing.T, work transport.Work, f Fixture, msgs ...*message.Message) {
	t.Helper()
	require.NoError(t, work.Publisher().Publish(f.Topics.Events(), msgs...))
}

// requireMetadataSubset requires every key sent to arrive with its value; the
// wire may add keys of its own (a delivery's receipt handle).
func requireMetadataSubset(t *testing.T, sent, got message.Metadata, id string) {
	t.Helper()
	for k, v := range sent {
		require.Equal(t, v, got.Get(k), "metadata %q of %s", k, id)
	}
}

// requireDepthEventually requires work's Depth to become want (SQS counts
// are approximate and lag behind).
func requireDepthEventually(t *testing.T, work transport.Work, want int64) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n, err := work.Depth(context.Background())
		if err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Depth never became %d: last %d, error %v", want, n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// delivery is one delivery of a message to the handler, and its outcome
// once the handler returned (done).
type delivery struct {
	uuid     string
	payload  []byte
	metadata message.Metadata
	at       time.Time
	done     bool
	err      error
}

// recorder records every delivery its handler sees.
type recorder struct {
	mu  sync.Mutex
	got []delivery
}

// handler records each delivery; then is its outcome (nil: ack).
func (r *recorder) handler(then func(*message.Message) error) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		r.mu.Lock()
		i := len(r.got)
		r.got = append(r.got, delivery{
			uuid: msg.UUID, payload: append([]byte(nil), msg.Payload...), metadata: maps.Clone(msg.Metadata), at: time.Now(),
		})
		r.mu.Unlock()
		var err error
		if then != nil {
			err = then(msg)
		}
		r.mu.Lock()
		r.got[i].done, r.got[i].err = true, err
		r.mu.Unlock()
		return err
	}
}

func (r *recorder) deliveries(id string) []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.got {
		if d.uuid == id {
			out = append(out, d)
		}
	}
	return out
}

func (r *recorder) count(id string) int { return len(r.deliveries(id)) }

func (r *recorder) first(id string) delivery {
	ds := r.deliveries(id)
	if len(ds) == 0 {
		return delivery{}
	}
	return ds[0]
}

// ackedAll reports whether each of ids had a delivery its handler returned nil for.
func (r *recorder) ackedAll(ids ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	acked := map[string]bool{}
	for _, d := range r.got {
		if d.done && d.err == nil {
			acked[d.uuid] = true
		}
	}
	for _, id := range ids {
		if !acked[id] {
			return false
		}
	}
	return true
}

func (r *recorder) waitAcked(t *testing.T, ids ...string) {
	t.Helper()
	require.Eventually(t, func() bool { return r.ackedAll(ids...) }, within, tick,
		"not every message was delivered and acked")
}

// waitSettled waits until no delivery came for quiet: redeliveries end.
func (r *recorder) waitSettled(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r.mu.Lock()
		n := len(r.got)
		var last time.Time
		if n > 0 {
			last = r.got[n-1].at
		}
		r.mu.Unlock()
		if time.Since(last) >= quiet {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries never stopped: %d so far, the last %s ago", n, time.Since(last))
		}
		time.Sleep(tick)
	}
}

// flagged are the deliveries flagged with MetaDecodeError.
func (r *recorder) flagged() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.got {
		if d.metadata.Get(transport.MetaDecodeError) != "" {
			out = append(out, d)
		}
	}
	return out
}

// describe lists the deliveries of id, relative to the first, for failure messages.
func (r *recorder) describe(id string) string {
	ds := r.deliveries(id)
	s := ""
	for i, d := range ds {
		outcome := "ack"
		switch {
		case !d.done:
			outcome = "in handler"
		case d.err != nil:
			outcome = "nack"
		}
		s += fmt.Sprintf("[+%s %s]", d.at.Sub(ds[0].at).Round(time.Millisecond), outcome)
		if i < len(ds)-1 {
			s += " "
		}
	}
	return s
}
