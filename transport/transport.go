// Package transport is the seam between Daybook's core and the wire its
// messages travel on. It declares the contracts (Admitter for the API's side
// of the work queue, Work for the worker's, EventLog for the outbox relay and
// the projections) and the names and metadata both wires share. Each wire
// owns everything about itself in a package of its own: redisstream (Redis
// Streams, the local default) and sqs (SQS and SNS, production). cmd chooses
// one, once; nothing else asks which.
package transport

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Names on the outside contract (DESIGN.md).
const (
	// EventsTopic is the logical work topic: dead letters record it as the
	// topic to replay onto, whichever wire carries it.
	EventsTopic = "daybook.events"
	// DeadTopic is the dead-letter topic of the work queue.
	DeadTopic = "daybook.events.dlq"
	// LogTopic is the event log the outbox relay publishes.
	LogTopic = "daybook.log"
	// WorkGroup consumes the work topic.
	WorkGroup = "daybook-worker"
	// ProjectionsGroup consumes the event log for the asynchronous projections.
	ProjectionsGroup = "daybook-projections"
)

// MetaDecodeError is set on a message whose wire form was malformed, so the
// handler fails it (and it reaches the dead-letter queue) instead of the
// subscriber choking on it. Both wires' unmarshallers never fail for this
// reason: watermill's subscribers stop or stall on an unmarshal error.
const MetaDecodeError = "daybook_decode_error"

// MetaFirstDelivery is "1" on a message its wire hands out for the first
// time: no consumer can have started on it before, so no earlier attempt
// can have crashed midway. Subscribers set or clear it on every delivery,
// whatever the message carried in.
const MetaFirstDelivery = "daybook_first_delivery"

// SetFirstDelivery marks msg as delivered for the first time, or not.
func SetFirstDelivery(msg *message.Message, first bool) {
	if first {
		msg.Metadata.Set(MetaFirstDelivery, "1")
		return
	}
	delete(msg.Metadata, MetaFirstDelivery)
}

// FirstDelivery reports whether msg is delivered for the first time.
func FirstDelivery(msg *message.Message) bool { return msg.Metadata.Get(MetaFirstDelivery) == "1" }

// Topics are the prefixed names one deployment (or one test) uses.
type Topics struct {
	Prefix string
}

// Events is the work topic.
func (t Topics) Events() string { return t.Prefix + EventsTopic }

// Dead is the dead-letter topic.
func (t Topics) Dead() string { return t.Prefix + DeadTopic }

// Named prefixes any other topic.
func (t Topics) Named(topic string) string { return t.Prefix + topic }

// Service is a background loop a transport needs while its consumers run
// (trimming a stream, recreating lost consumer groups): started with them,
// stopped after they drained.
type Service interface {
	Start(ctx context.Context)
	Stop()
}

// Sender adapts a watermill publisher to plain arguments, for code that must
// not depend on watermill (replay).
type Sender struct{ Pub message.Publisher }

// Publish sends one message to topic.
func (s Sender) Publish(ctx context.Context, topic, messageUUID string, payload []byte, metadata map[string]string) error {
	msg := message.NewMessage(messageUUID, payload)
	for k, v := range metadata {
		msg.Metadata.Set(k, v)
	}
	msg.SetContext(ctx)
	return s.Pub.Publish(topic, msg)
}

// Logger adapts logger for watermill, whose routers and subscribers log
// several Info lines per consumer as they start and stop (1,303 lines for one
// `daybook run` start and stop with 256 consumers): those go to Debug, and
// watermill's warnings and errors stay as they are.
func Logger(logger *slog.Logger) watermill.LoggerAdapter {
	return watermill.NewSlogLoggerWithLevelMapping(logger, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
}
