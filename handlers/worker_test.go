package handlers

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/redisstream"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/logevent"
	"github.com/daybook/daybook/projections"
)

const orderPayload = `{"status":"paid","amount":"12.30"}`

func TestWorker_ProcessesEventToCompletedWithEveryEffect(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	e := h.newEvent(logevent.SourceOrderUpdates, orderPayload)
	h.enqueue(e)

	rec := h.waitStatus(e.ID, ingest.StatusCompleted, 10*time.Second)
	require.Equal(t, 1, rec.Attempts)
	require.Equal(t, 1, h.logRows(e.ID))
	order, ok, err := projections.GetOrder(context.Background(), h.pool, e.OrderID)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "paid", order.Status)
	require.Equal(t, e.ID, order.LastEventID)
	// The outbox relay publishes the log event on daybook.log.
	require.Eventually(t, func() bool {
		return h.redis.XLen(context.Background(), h.topics.Named("daybook.log")).Val() == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 1.0, h.processed("COMPLETED"))
}

func TestWorker_DuplicateMessagesAreProcessedOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	e := h.newEvent("clicks", `{"x":1}`)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dup := e
			if i%2 == 1 {
				// Same key, another id: what arrives when the Redis fast path forgot the key.
				dup.ID = h.newEvent("clicks", `{"x":1}`).ID
			}
			h.enqueue(dup)
		}()
	}
	wg.Wait()
	require.Eventually(t, func() bool {
		return h.processed("COMPLETED")+h.processed("DUPLICATE")+h.processed("SKIPPED") == 40
	}, 10*time.Second, 20*time.Millisecond)
	// Whichever copy arrived first won the key; every other copy was a no-op.
	require.Equal(t, 1.0, h.processed("COMPLETED"))
	winner, err := h.events.GetByKey(context.Background(), e.IdempotencyKey)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusCompleted, winner.Status)
	require.Equal(t, 1, h.logRows(winner.ID))
	var rows, logRows int
	require.NoError(t, h.pool.QueryRow(context.Background(), `SELECT count(*) FROM ingestion_events`).Scan(&rows))
	require.NoError(t, h.pool.QueryRow(context.Background(), `SELECT count(*) FROM event_log`).Scan(&logRows))
	require.Equal(t, 1, rows)
	require.Equal(t, 1, logRows)
}

// A consumer reads a message and dies without acknowledging it: another
// consumer claims it after ClaimIdle and processes it, once.
func TestWorker_RedeliversMessageOfDeadConsumerAndProcessesItOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	e := h.newEvent(logevent.SourceOrderUpdates, orderPayload)
	h.enqueue(e)
	stream := h.topics.Events()
	require.NoError(t, h.redis.XGroupCreateMkStream(ctx, stream, transport.WorkGroup, "0").Err())
	got, err := h.redis.XReadGroup(ctx, &redis.XReadGroupArgs{Group: transport.WorkGroup, Consumer: "dead-worker", Streams: []string{stream, ">"}, Count: 1}).Result()
	require.NoError(t, err)
	require.Len(t, got[0].Messages, 1)

	h.start()
	rec := h.waitStatus(e.ID, ingest.StatusCompleted, 10*time.Second)
	require.Equal(t, 1, rec.Attempts)
	require.Equal(t, 1, h.logRows(e.ID))
	require.Eventually(t, func() bool {
		return h.redis.XPending(ctx, stream, transport.WorkGroup).Val().Count == 0
	}, 10*time.Second, 20*time.Millisecond, "the claimed message is acknowledged")
}

// Redis records a delivery to one of the worker's own consumers whose reply
// never arrives (the connection dropped, Redis was killed): the entry sits on
// that consumer's pending list while the consumer reads on. No consumer here
// is handling it, so it is claimed after ClaimIdle and processed once,
// without a restart.
func TestWorker_DeliveryWhoseReplyWasLostIsClaimedBackWhileRunning(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	h.start()
	warm := h.newEvent("clicks", `{"x":0}`)
	h.enqueue(warm)
	h.waitStatus(warm.ID, ingest.StatusCompleted, 10*time.Second)

	// The worker's consumers wait in blocking reads; one script adds the entry
	// and reads it in consumer test-0-0's name (slot 0, consumer 0) before they can, as a read whose
	// reply was lost.
	lost := h.newEvent(logevent.SourceOrderUpdates, orderPayload)
	body, err := lost.Encode()
	require.NoError(t, err)
	read, err := h.redis.Eval(ctx, `
		redis.call('XADD', KEYS[1], '*', 'uuid', 'lost-reply', 'payload', ARGV[1], 'metadata', '{}')
		return redis.call('XREADGROUP', 'GROUP', ARGV[2], 'test-0-0', 'COUNT', 1, 'STREAMS', KEYS[1], '>')`,
		[]string{h.topics.Events()}, body, transport.WorkGroup).Result()
	require.NoError(t, err)
	require.NotNil(t, read, "test-0-0 got the entry")

	rec := h.waitStatus(lost.ID, ingest.StatusCompleted, 10*time.Second)
	require.Equal(t, 1, rec.Attempts)
	require.Equal(t, 1, h.logRows(lost.ID))
}

// Redis loses the stream and its groups (restart without persistence,
// FLUSHALL): the worker recreates the group and events sent afterwards flow
// again, instead of every read failing with NOGROUP for good.
func TestWorker_LostConsumerGroupIsRecreatedAndConsumptionResumes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	before := h.newEvent("clicks", `{"x":0}`)
	h.enqueue(before)
	h.waitStatus(before.ID, ingest.StatusCompleted, 10*time.Second)

	require.NoError(t, h.redis.Del(context.Background(), h.topics.Events()).Err())
	after := h.newEvent("clicks", `{"x":1}`)
	h.enqueue(after)
	rec := h.waitStatus(after.ID, ingest.StatusCompleted, 15*time.Second)
	require.Equal(t, 1, rec.Attempts)
}

// A worker dies after claiming the event in Postgres (PROCESSING, attempt 1)
// and before finishing: the redelivered message finds it PROCESSING and
// leaves it; the rescuer puts it back and it completes, once.
func TestWorker_EventStuckInProcessingIsRescuedAndCompletedOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cfg.StuckAfter = 500 * time.Millisecond
	h.cfg.AttemptTimeout = 400 * time.Millisecond
	e := h.newEvent(logevent.SourceOrderUpdates, orderPayload)
	outcome, rec, err := h.events.Claim(context.Background(), e)
	require.NoError(t, err)
	require.Equal(t, ingest.Claimed, outcome)
	require.Equal(t, ingest.StatusProcessing, rec.Status)
	h.enqueue(e) // the dead worker's message, redelivered

	h.start()
	rec = h.waitStatus(e.ID, ingest.StatusCompleted, 10*time.Second)
	require.Equal(t, 2, rec.Attempts, "the dead worker's attempt counts")
	require.Equal(t, 1, h.logRows(e.ID))
	require.GreaterOrEqual(t, testutil.ToFloat64(h.metrics.StuckRescued), 1.0)
}

func TestWorker_MalformedMessagesAreDeadLetteredAfterFiveAttemptsWhileOthersFlow(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	stream := h.topics.Events()
	// Straight onto the stream, bypassing every producer of ours.
	require.NoError(t, h.redis.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{"uuid": "bad-json", "payload": "{not json", "metadata": "{}"}}).Err())
	require.NoError(t, h.redis.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{"foo": "bar"}}).Err())
	var good []ingest.Event
	for range 20 {
		e := h.newEvent("clicks", `{"x":1}`)
		good = append(good, e)
		h.enqueue(e)
	}
	h.start()
	for _, e := range good {
		h.waitStatus(e.ID, ingest.StatusCompleted, 10*time.Second)
	}
	require.Eventually(t, func() bool {
		n, err := h.dead.Waiting(ctx)
		return err == nil && n == 2
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 10.0, h.processed("RETRY"), "5 attempts for each malformed message")
	// Counted just after the row is written: a moment after the row is visible.
	require.Eventually(t, func() bool { return h.processed("DEAD_LETTERED") == 2 }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		return h.redis.XLen(ctx, h.topics.Dead()).Val() == 2 && h.redis.XPending(ctx, stream, transport.WorkGroup).Val().Count == 0
	}, 10*time.Second, 20*time.Millisecond, "both are on the DLQ stream and acknowledged on the work stream")

	letters, more, err := h.dead.List(ctx, deadletter.ListParams{Waiting: true})
	require.NoError(t, err)
	require.False(t, more)
	require.Len(t, letters, 2)
	for _, l := range letters {
		require.Nil(t, l.EventID, "undecodable: no event id")
		require.Contains(t, l.Reason, "message")
	}

	// Replay puts the message back on the queue; still malformed, it comes back.
	before := h.redis.XLen(ctx, stream).Val()
	replayed, err := h.replayer().DeadLetter(ctx, letters[0].ID)
	require.NoError(t, err)
	require.NotNil(t, replayed.ReplayedAt)
	require.Equal(t, before+1, h.redis.XLen(ctx, stream).Val())
	require.Eventually(t, func() bool { return h.processed("DEAD_LETTERED") == 3 }, 10*time.Second, 20*time.Millisecond)
}

func TestWorker_RuleViolationFailsAtOnceWithoutRetries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	e := h.newEvent(logevent.SourceOrderUpdates, `{"amount":"1.00"}`) // no payload.status
	h.enqueue(e)
	rec := h.waitStatus(e.ID, ingest.StatusFailed, 10*time.Second)
	require.Equal(t, 1, rec.Attempts)
	require.Contains(t, rec.LastError, "payload.status")
	require.Eventually(t, func() bool { return h.processed("DEAD_LETTERED") == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Zero(t, h.processed("RETRY"))
	require.Zero(t, h.logRows(e.ID))
	letters, _, err := h.dead.List(context.Background(), deadletter.ListParams{Waiting: true})
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.Equal(t, e.ID, *letters[0].EventID)
}

func TestWorker_FailedEventIsReplayedToCompleted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.breakArchive()
	h.start()
	e := h.newEvent(logevent.SourceOrderUpdates, orderPayload)
	h.enqueue(e)
	rec := h.waitStatus(e.ID, ingest.StatusFailed, 10*time.Second)
	require.Equal(t, 5, rec.Attempts)
	require.Contains(t, rec.LastError, "archive")
	require.Equal(t, 4.0, h.processed("RETRY"))
	require.Equal(t, 1.0, h.processed(string(ingest.StatusFailed)), "the 5th attempt fails for good")
	require.Eventually(t, func() bool { return h.processed("DEAD_LETTERED") == 1 }, 10*time.Second, 20*time.Millisecond)

	h.fixArchive()
	replayed, err := h.replayer().Event(context.Background(), e.ID)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusPending, replayed.Status)
	rec = h.waitStatus(e.ID, ingest.StatusCompleted, 10*time.Second)
	require.Equal(t, 1, rec.Attempts, "a replay starts counting again")
	require.Equal(t, 1, rec.Replays)
	require.Equal(t, 1, h.logRows(e.ID))

	_, err = h.replayer().Event(context.Background(), e.ID)
	require.ErrorIs(t, err, ingest.ErrAlreadyCompleted)
}

func TestWorker_BreakerStopsPullingWhilePostgresIsUnreachable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, throughProxy)
	h.start()
	warm := h.newEvent("clicks", `{"x":0}`)
	h.enqueue(warm)
	h.waitStatus(warm.ID, ingest.StatusCompleted, 10*time.Second)

	h.proxy.Cut()
	var events []ingest.Event
	for i := range 10 {
		e := h.newEvent("clicks", `{"x":1}`)
		e.IdempotencyKey = e.IdempotencyKey + "-" + string(rune('a'+i))
		events = append(events, e)
		h.enqueue(e)
	}
	state := h.metrics.CircuitBreakerState.WithLabelValues("postgres")
	require.Eventually(t, func() bool { return testutil.ToFloat64(state) == 1 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(10 * h.cfg.BreakerProbeInterval) // many probe intervals pass with Postgres down
	require.Zero(t, h.processed("DEAD_LETTERED"))

	h.proxy.Restore()
	for _, e := range events {
		rec := h.waitStatus(e.ID, ingest.StatusCompleted, 15*time.Second)
		require.Equal(t, 1, rec.Attempts, "the outage burned no attempt of event %s", e.ID)
	}
	require.Zero(t, testutil.ToFloat64(state))
	require.Zero(t, h.processed("DEAD_LETTERED"))
}

// Cancelling Run is what SIGTERM does: the worker stops taking messages,
// finishes what is in flight, and leaves nothing PROCESSING; a new worker
// finishes the rest, each event once.
func TestWorker_ShutdownDrainsAndNothingIsLostOrDoubled(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const n = 300
	events := make([]ingest.Event, n)
	for i := range events {
		events[i] = h.newEvent(logevent.SourceOrderUpdates, orderPayload)
		h.enqueue(events[i])
	}
	h.start()
	require.Eventually(t, func() bool { return h.processed("COMPLETED") >= 20 }, 10*time.Second, 5*time.Millisecond)
	start := time.Now()
	require.NoError(t, h.stop())
	require.Less(t, time.Since(start), h.cfg.ShutdownTimeout)

	var processing int
	require.NoError(t, h.pool.QueryRow(context.Background(), `SELECT count(*) FROM ingestion_events WHERE status = 'PROCESSING'`).Scan(&processing))
	require.Zero(t, processing, "nothing left in PROCESSING")
	n1, err := h.dead.Waiting(context.Background())
	require.NoError(t, err)
	require.Zero(t, n1, "shutdown dead-letters nothing")

	h.start() // same consumer names: it claims what the first left pending
	for _, e := range events {
		h.waitStatus(e.ID, ingest.StatusCompleted, 20*time.Second)
	}
	var logRows int
	require.NoError(t, h.pool.QueryRow(context.Background(), `SELECT count(*) FROM event_log`).Scan(&logRows))
	require.Equal(t, n, logRows)
}

func TestWorker_TwoProcessesOfOneNameConsumeUnderTheirOwnNames(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a, b := h.newWorker(), h.newWorker()
	ctx, cancel := context.WithCancel(context.Background())
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- a.Run(ctx) }()
	go func() { doneB <- b.Run(ctx) }()
	require.Eventually(t, func() bool { return a.subscribed.Load() && b.subscribed.Load() }, 10*time.Second, 20*time.Millisecond)
	slot := func(w *Worker) int { return w.deps.Work.(*redisstream.Transport).Slot() }
	require.ElementsMatch(t, []int{0, 1}, []int{slot(a), slot(b)}, "each process consumes under names of its own")

	var events []ingest.Event
	for i := range 40 {
		e := h.newEvent("clicks", `{"i":`+strconv.Itoa(i)+`}`)
		h.enqueue(e)
		events = append(events, e)
	}
	for _, e := range events {
		rec := h.waitStatus(e.ID, ingest.StatusCompleted, 10*time.Second)
		require.Equal(t, 1, rec.Attempts, "each event took one attempt: no process took another's messages")
	}
	cancel()
	require.NoError(t, <-doneA)
	require.NoError(t, <-doneB)
}
