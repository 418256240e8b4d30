package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/daybook/daybook/breaker"
	"github.com/daybook/daybook/config"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/redisstream"
	"github.com/daybook/daybook/transport/sqs"
)

// wire is the transport DAYBOOK_QUEUE names, chosen once in openWire: what
// the API admits onto, what the worker consumes, and what the operator's
// commands replay onto. Nothing else in the process asks which it is.
type wire interface {
	// redisRequired: without Redis the process cannot start (Redis Streams
	// carries the queue); otherwise Redis is a fast path it fails open around.
	redisRequired() bool
	// admitter is the API's admission through the gate.
	admitter(a *app, g *redisstream.Gate) (transport.Admitter, error)
	// ready checks that the queue can take messages, beyond Redis (nil: nothing more).
	ready() func(context.Context) error
	// worker is the worker's work transport and event log.
	worker(ctx context.Context, a *app, host string) (transport.Work, transport.EventLog, error)
	// publisher puts messages on the work topic and the log topic (replay).
	publisher(ctx context.Context, a *app) (message.Publisher, error)
	// redrivable is what waits in the wire's own DLQ for the worker to move
	// into dead_letters, and where ("" where there is no such queue).
	redrivable(ctx context.Context) (int64, string, error)
	close()
}

// openWire opens the configured transport.
func openWire(ctx context.Context, cfg config.Config) (wire, error) {
	if cfg.Queue != config.QueueSQS {
		return streamWire{}, nil
	}
	q, err := sqs.Open(ctx, sqs.Config{
		Queue: cfg.SQS.Queue, DeadQueue: cfg.SQS.DeadQueue, VisibilityTimeout: cfg.SQS.VisibilityTimeout,
		Create: cfg.SQS.CreateQueues, LogTopic: cfg.SQS.LogTopic, LogTopicARN: cfg.SQS.LogTopicARN,
	})
	if err != nil {
		return nil, err
	}
	return &sqsWire{q: q}, nil
}

// streamWire is Redis Streams.
type streamWire struct{}

func (streamWire) redisRequired() bool { return true }

func (streamWire) admitter(_ *app, g *redisstream.Gate) (transport.Admitter, error) { return g, nil }

func (streamWire) ready() func(context.Context) error { return nil }

func (streamWire) worker(_ context.Context, a *app, host string) (transport.Work, transport.EventLog, error) {
	t, err := redisstream.New(a.redis, redisstream.Config{
		Topics: a.topics(), Name: host, Consumers: a.cfg.Worker.Consumers, Batch: a.cfg.Worker.Batch,
		InFlight: a.cfg.Worker.InFlight, ClaimIdle: a.cfg.Worker.ClaimIdle, Logger: a.log,
	})
	return t, t, err
}

func (streamWire) publisher(_ context.Context, a *app) (message.Publisher, error) {
	return redisstream.NewPipelinedPublisher(a.redis, nil), nil
}

func (streamWire) redrivable(context.Context) (int64, string, error) { return 0, "", nil }

func (streamWire) close() {}

// sqsWire is SQS for the work queue and SNS for the event log.
type sqsWire struct{ q *sqs.Queues }

func (*sqsWire) redisRequired() bool { return false }

func (w *sqsWire) admitter(a *app, g *redisstream.Gate) (transport.Admitter, error) {
	pub, err := w.q.NewPublisher(nil)
	if err != nil {
		return nil, err
	}
	var lastWarn atomic.Int64
	redisDown, err := breaker.New(breaker.Config{
		Probe:         func(ctx context.Context) error { return a.redis.Ping(ctx).Err() },
		ProbeInterval: time.Second,
		ProbeTimeout:  time.Second,
		OnChange: func(s breaker.State, cause error) {
			a.metrics.CircuitBreakerState.WithLabelValues("redis").Set(float64(s))
			if s == breaker.Open {
				a.log.Warn("circuit breaker open: Redis unreachable, ingestion skips it until it answers", "error", cause)
			} else {
				a.log.Info("circuit breaker closed: Redis is back, rate limit and fast duplicate check resume")
			}
		},
	})
	if err != nil {
		return nil, err
	}
	a.metrics.CircuitBreakerState.WithLabelValues("redis").Set(0)
	a.closers = append(a.closers, closerFunc(redisDown.Close))
	return sqs.NewAdmitter(g, pub, ingest.NewStore(a.pool), sqs.AdmitConfig{
		Topic:        w.q.Queue(),
		RedisBreaker: redisDown,
		OnFailOpen: func(n int, cause error) {
			a.metrics.RedisFailOpen.WithLabelValues("ingest").Add(float64(n))
			// One line per interval, not per request: an outage would flood the log.
			if now := time.Now().Unix(); lastWarn.Load() < now-failOpenLogEverySeconds {
				lastWarn.Store(now)
				a.log.Warn("redis unreachable: admitting events without rate limit or fast duplicate check", "error", cause)
			}
		},
		OnReleaseError: func(err error) {
			a.log.Error("could not free idempotency keys of events SQS refused: their retries are answered as duplicates until the keys expire", "error", err)
		},
	})
}

func (w *sqsWire) ready() func(context.Context) error { return w.q.Ready }

func (w *sqsWire) transport(ctx context.Context, a *app, consumers int) (*sqs.Transport, error) {
	t, err := sqs.NewTransport(ctx, w.q, sqs.TransportConfig{
		Topics: a.topics(), Consumers: consumers, LogConsumers: logConsumers, Logger: a.log,
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// logConsumers are the receive loops of each event-log group's queue.
const logConsumers = 4

func (w *sqsWire) worker(ctx context.Context, a *app, _ string) (transport.Work, transport.EventLog, error) {
	t, err := w.transport(ctx, a, a.cfg.SQS.Consumers)
	return t, t, err
}

func (w *sqsWire) publisher(ctx context.Context, a *app) (message.Publisher, error) {
	t, err := w.transport(ctx, a, 1)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, closerFunc(func() { _ = t.Close() }))
	return t.Publisher(), nil
}

func (w *sqsWire) redrivable(ctx context.Context) (int64, string, error) {
	n, err := w.q.DeadDepth(ctx)
	return n, fmt.Sprintf("SQS queue %s", w.q.DeadQueue()), err
}

func (w *sqsWire) close() { w.q.Close() }

// hostName names this process's consumers.
func hostName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "daybook"
	}
	return host
}
