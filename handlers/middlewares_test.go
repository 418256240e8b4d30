package handlers

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/transport"
)

// chained runs h inside the worker's real middleware chain.
func chained(t *testing.T, w *Worker, h message.HandlerFunc) message.HandlerFunc {
	t.Helper()
	mws, err := w.middlewares(w.cfg.Topics.Events(), true)
	require.NoError(t, err)
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

func newMessage(payload string) *message.Message {
	msg := message.NewMessage(uuid.NewString(), []byte(payload))
	msg.SetContext(context.Background())
	return msg
}

func TestMiddlewares_PanicIsAnAttemptRetriedThenDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w := h.newWorker()
	defer w.breaker.Close()
	var calls atomic.Int32
	handler := chained(t, w, func(*message.Message) ([]*message.Message, error) {
		calls.Add(1)
		panic("boom")
	})

	_, err := handler(newMessage(`{}`))

	require.NoError(t, err, "dead-lettered, so acknowledged")
	require.Equal(t, int32(5), calls.Load(), "5 attempts")
	letters, _, err := h.dead.List(context.Background(), deadletter.ListParams{Waiting: true})
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.Contains(t, letters[0].Reason, "boom")
}

func TestMiddlewares_ErrorDuringShutdownIsNeitherRetriedNorDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w := h.newWorker()
	defer w.breaker.Close()
	var calls atomic.Int32
	msg := newMessage(`{}`)
	ctx, cancel := context.WithCancel(context.Background())
	msg.SetContext(ctx)
	handler := chained(t, w, func(*message.Message) ([]*message.Message, error) {
		calls.Add(1)
		cancel() // the router closes while the attempt runs
		return nil, errors.New("interrupted")
	})

	_, err := handler(msg)

	require.ErrorIs(t, err, errShuttingDown, "nacked: the message stays pending for the next run")
	require.Equal(t, int32(1), calls.Load())
	n, err := h.dead.Waiting(context.Background())
	require.NoError(t, err)
	require.Zero(t, n)
}

// A message whose handling did not finish (here: interrupted by shutdown)
// is not recorded, so its redelivery runs; a handled one's is skipped.
func TestMiddlewares_DedupSkipsAHandledMessageButNotAnUnfinishedOne(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w := h.newWorker()
	defer w.breaker.Close()
	var calls atomic.Int32
	interrupt := atomic.Pointer[context.CancelFunc]{}
	handler := chained(t, w, func(*message.Message) ([]*message.Message, error) {
		calls.Add(1)
		if cancel := interrupt.Load(); cancel != nil {
			(*cancel)()
			return nil, errors.New("interrupted")
		}
		return nil, nil
	})

	first := newMessage(`{}`)
	ctx, cancel := context.WithCancel(context.Background())
	first.SetContext(ctx)
	interrupt.Store(&cancel)
	_, err := handler(first)
	require.ErrorIs(t, err, errShuttingDown)
	interrupt.Store(nil)

	redelivered := first.Copy()
	redelivered.SetContext(context.Background())
	_, err = handler(redelivered)
	require.NoError(t, err)
	require.Equal(t, int32(2), calls.Load(), "the unfinished message's redelivery runs")

	again := first.Copy()
	again.SetContext(context.Background())
	_, err = handler(again)
	require.NoError(t, err)
	require.Equal(t, int32(2), calls.Load(), "a handled message's redelivery is skipped")
	require.Equal(t, 1.0, h.processed("REDELIVERED"))
}

// A first delivery is neither checked nor recorded: it cannot have been
// handled before, and the row its handling writes in Postgres catches its
// redelivery. Redeliveries are checked and recorded as before.
func TestMiddlewares_DedupLeavesFirstDeliveriesToPostgres(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w := h.newWorker()
	defer w.breaker.Close()
	var calls atomic.Int32
	handler := chained(t, w, func(*message.Message) ([]*message.Message, error) {
		calls.Add(1)
		return nil, nil
	})
	recorded := func(msg *message.Message) int64 {
		return h.redis.Exists(context.Background(), w.dedup.key(msg.UUID)).Val()
	}

	first := newMessage(`{}`)
	transport.SetFirstDelivery(first, true)
	_, err := handler(first)
	require.NoError(t, err)
	require.Equal(t, int32(1), calls.Load())
	require.Zero(t, recorded(first), "a first delivery is not recorded")

	redelivered := first.Copy()
	transport.SetFirstDelivery(redelivered, false)
	_, err = handler(redelivered)
	require.NoError(t, err)
	require.Equal(t, int32(2), calls.Load(), "its redelivery goes on to Postgres")
	require.EqualValues(t, 1, recorded(first), "a handled redelivery is recorded")

	again := redelivered.Copy()
	_, err = handler(again)
	require.NoError(t, err)
	require.Equal(t, int32(2), calls.Load(), "and the next redelivery is skipped")
	require.Equal(t, 1.0, h.processed("REDELIVERED"))
}

// Both streams are trimmed of what every group acknowledged: the work
// stream, and the log stream once the projector has read it.
func TestWorker_TrimsAcknowledgedEntriesFromTheWorkAndLogStreams(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.trimInterval = 100 * time.Millisecond
	h.start()
	for range 30 {
		e := h.newEvent("clicks", `{"x":1}`)
		h.enqueue(e)
		defer h.waitStatus(e.ID, "COMPLETED", 10*time.Second)
	}
	ctx := context.Background()
	logStream := h.topics.Named("daybook.log")
	require.Eventually(t, func() bool {
		return h.redis.XLen(ctx, h.topics.Events()).Val() == 0
	}, 10*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		info, err := h.redis.XInfoStream(ctx, logStream).Result()
		return err == nil && info.EntriesAdded > 0 && info.Length == 0
	}, 10*time.Second, 50*time.Millisecond, "log messages were published, read and trimmed")
}
