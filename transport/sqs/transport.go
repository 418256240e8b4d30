package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/daybook/daybook/transport"
)

// TransportConfig configures the worker's side of SQS.
type TransportConfig struct {
	Topics transport.Topics
	// Consumers is how many receive loops read the work queue, each
	// receiving up to ten messages a call and holding at most ten at a time;
	// LogConsumers the same for each log group's queue.
	Consumers    int
	LogConsumers int
	Logger       *slog.Logger
}

// redrivenConsumers receive from an SQS dead-letter queue: it fills only when
// workers crash or hang on the same message again and again.
const redrivenConsumers = 1

// Transport is transport.Work on the SQS work queue and transport.EventLog on
// the SNS topic of the event log, each consumer group reading a queue of its
// own subscribed to it.
//
// The two dead-letter paths: a message that fails is retried in place with
// backoff and, at its last failure, recorded in dead_letters and deleted from
// SQS (the worker's poison queue); its receive count stays 1. SQS's redrive
// (maxReceiveCount 5) catches only messages never acknowledged: five
// deliveries whose worker died or hung. keepInvisible prevents a slow but live
// attempt from counting as such. Redriven consumers move what SQS redrove into
// dead_letters, so GET /admin/dlq and `daybook dlq` list and replay both alike.
type Transport struct {
	q        *Queues
	cfg      TransportConfig
	logger   watermill.LoggerAdapter
	topicARN string
	work     message.Publisher
	log      message.Publisher

	mu sync.Mutex
	// dead maps each DLQ this process's queues redrive to onto the topic its
	// letters are replayed onto.
	dead map[string]string
}

var (
	_ transport.Work     = (*Transport)(nil)
	_ transport.EventLog = (*Transport)(nil)
)

// NewTransport builds the transport on q; it resolves the log topic (creating
// it when q's Config.Create is set).
func NewTransport(ctx context.Context, q *Queues, cfg TransportConfig) (*Transport, error) {
	if cfg.Consumers <= 0 {
		return nil, errors.New("sqs transport: Consumers must be positive")
	}
	if cfg.LogConsumers <= 0 {
		cfg.LogConsumers = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	logger := transport.Logger(cfg.Logger)
	arn, err := q.logTopic(ctx)
	if err != nil {
		return nil, err
	}
	work, err := q.NewPublisher(logger)
	if err != nil {
		return nil, err
	}
	log, err := q.newLogPublisher(arn, logger)
	if err != nil {
		return nil, err
	}
	return &Transport{
		q: q, cfg: cfg, logger: logger, topicARN: arn, work: work, log: log,
		dead: map[string]string{q.DeadQueue(): cfg.Topics.Events()},
	}, nil
}

// Open does nothing: SQS has no consumer names to claim.
func (t *Transport) Open(context.Context) error { return nil }

// Close closes the publishers.
func (t *Transport) Close() error { return errors.Join(t.work.Close(), t.log.Close()) }

// Consumers are the work queue's receive loops.
func (t *Transport) Consumers() ([]transport.Consumer, error) {
	sub, err := t.q.NewSubscriber(t.q.Queue(), t.cfg.Consumers, t.logger)
	if err != nil {
		return nil, err
	}
	return []transport.Consumer{{
		Name: "ingest-sqs", Topic: t.q.Queue(), Subscriber: sub,
		Middleware: []message.HandlerMiddleware{t.keepInvisible},
	}}, nil
}

// Redriven read the DLQs of the work queue and of every log group subscribed.
func (t *Transport) Redriven() ([]transport.Consumer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []transport.Consumer
	for queue, replayTopic := range t.dead {
		sub, err := t.q.NewSubscriber(queue, redrivenConsumers, t.logger)
		if err != nil {
			return nil, err
		}
		out = append(out, transport.Consumer{
			Name: "sqs-redriven-" + queue, Topic: queue, Subscriber: sub,
			Middleware:  []message.HandlerMiddleware{t.keepInvisible},
			ReplayTopic: replayTopic,
			DeadReason: fmt.Sprintf("redriven by SQS to %s: delivered %d times without an acknowledgement (worker crashed or hung)",
				queue, MaxReceiveCount),
		})
	}
	return out, nil
}

// Publisher puts messages on the work queue (topic Topics.Events()) or on the
// log topic (Topics.Named(LogTopic)): the topics dead letters record.
func (t *Transport) Publisher() message.Publisher { return router{t: t} }

type router struct{ t *Transport }

// Publish implements message.Publisher.
func (r router) Publish(topic string, msgs ...*message.Message) error {
	switch topic {
	case r.t.cfg.Topics.Events():
		return r.t.work.Publish(r.t.q.Queue(), msgs...)
	case r.t.cfg.Topics.Named(transport.LogTopic):
		return r.t.log.Publish(topic, msgs...)
	}
	return fmt.Errorf("sqs transport: no queue for topic %q", topic)
}

// Close implements message.Publisher; the transport owns the publishers.
func (router) Close() error { return nil }

// PublishDead does nothing: the table dead_letters is the dead-letter queue
// of record, and SQS's own DLQ holds only what SQS redrove.
func (t *Transport) PublishDead(*message.Message) error { return nil }

// Depth is the work queue's messages waiting plus those in flight.
func (t *Transport) Depth(ctx context.Context) (int64, error) { return t.q.Depth(ctx) }

// Redrivable is what waits in the work queue's DLQ to be moved into dead_letters.
func (t *Transport) Redrivable(ctx context.Context) (int64, error) { return t.q.DeadDepth(ctx) }

// Services: none; SQS deletes acknowledged messages itself.
func (t *Transport) Services() []transport.Service { return nil }

// LogPublisher publishes to the log topic.
func (t *Transport) LogPublisher() message.Publisher { return t.log }

// Subscribe reads group's queue of the log topic (made and subscribed first
// when Config.Create is set; Terraform's otherwise). consumer is unused: SQS
// has no consumer names.
func (t *Transport) Subscribe(group, _ string) (transport.Consumer, error) {
	queue := t.q.logQueue(group)
	if t.q.cfg.Create {
		ctx, cancel := context.WithTimeout(context.Background(), 4*sqsCallTimeout)
		defer cancel()
		if err := t.q.subscribeLogQueue(ctx, t.topicARN, group); err != nil {
			return transport.Consumer{}, err
		}
	}
	sub, err := t.q.NewSubscriber(queue, t.cfg.LogConsumers, t.logger)
	if err != nil {
		return transport.Consumer{}, err
	}
	t.mu.Lock()
	t.dead[t.q.logDeadQueue(group)] = t.cfg.Topics.Named(transport.LogTopic)
	t.mu.Unlock()
	return transport.Consumer{
		Name: group, Topic: queue, Subscriber: sub,
		Middleware: []message.HandlerMiddleware{t.keepInvisible},
	}, nil
}

// keepInvisible keeps an SQS message invisible to other consumers while it is
// handled, however long its retries or a breaker pause take. A message the
// worker gives back (shutting down) is made visible again at once, so
// another worker takes it without waiting for the timeout.
func (t *Transport) keepInvisible(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		stop := t.q.KeepInvisible(msg, func(err error) {
			t.cfg.Logger.Warn("extend sqs visibility", "message_uuid", msg.UUID, "error", err)
		})
		out, err := h(msg)
		stop()
		if err != nil {
			if rerr := t.q.MakeVisible(msg); rerr != nil {
				t.cfg.Logger.Warn("hand sqs message back", "message_uuid", msg.UUID, "error", rerr)
			}
		}
		return out, err
	}
}
