package transport

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Consumer is one subscription the worker's router runs a handler on.
type Consumer struct {
	// Name is the router handler's name, unique in the process.
	Name string
	// Topic is what Subscriber subscribes to.
	Topic      string
	Subscriber message.Subscriber
	// Middleware is the wire's own, run outside the core's chain: for
	// example keeping an SQS message invisible while it is handled, or
	// telling a stream's claim pass which messages are in hand.
	Middleware []message.HandlerMiddleware
	// Redriven consumers only (Work.Redriven): the topic a dead letter taken
	// from here is replayed onto, and why the wire gave the message up.
	ReplayTopic string
	DeadReason  string
}

// Work is the worker's side of the work queue: the consumer contract.
//
// Delivery is at least once. A message is acknowledged only after its handler
// returned without error; a nacked message comes back after a pause; a
// message held by a consumer that died comes back to another (or to the same
// process restarted). A message the wire cannot decode arrives flagged with
// MetaDecodeError instead of stopping the subscriber.
type Work interface {
	// Open prepares this process's consumers (a stream's consumer names, what
	// a previous run left pending). Close undoes it once the router closed.
	Open(ctx context.Context) error
	// Consumers are the subscriptions of the work topic.
	Consumers() ([]Consumer, error)
	// Redriven are the subscriptions of what the wire itself gave up on
	// (SQS's redrive to a DLQ after maxReceiveCount deliveries without an
	// ack), whose messages the worker records as dead letters; none where the
	// wire never gives up by itself. Call it after the event log's Subscribe,
	// whose queues may have such a DLQ too.
	Redriven() ([]Consumer, error)
	// Publisher puts messages on the work topic, Topics.Events() (replay).
	Publisher() message.Publisher
	// PublishDead copies a dead-lettered message to the wire's own
	// dead-letter topic, where it has one (the table dead_letters is the
	// dead-letter queue of record on every wire).
	PublishDead(msg *message.Message) error
	// Depth is the messages waiting or in hand on the work topic.
	Depth(ctx context.Context) (int64, error)
	// Redrivable is the messages waiting in the wire's own dead-letter queue
	// to be moved into dead_letters (0 where there is none).
	Redrivable(ctx context.Context) (int64, error)
	// Services are the loops the wire needs while consumers run.
	Services() []Service
	Close() error
}

// EventLog carries the event log from the outbox relay to its consumer
// groups, each of which receives every event.
type EventLog interface {
	// LogPublisher is what the relay publishes LogTopic (unprefixed) through.
	LogPublisher() message.Publisher
	// Subscribe is group's subscription of the log, named consumer within
	// the group where the wire has consumer names.
	Subscribe(group, consumer string) (Consumer, error)
}
