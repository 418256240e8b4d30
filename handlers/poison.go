package handlers

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
)

// deadLetterPublisher is the poison queue: it records the message in table
// dead_letters (listable and replayable) and hands it to the wire's DLQ.
// Both must succeed before the message is acknowledged.
type deadLetterPublisher struct {
	worker *Worker
	// source is the topic a replay puts the message back on.
	source string
}

func (p *deadLetterPublisher) Publish(_ string, msgs ...*message.Message) error {
	w := p.worker
	for _, msg := range msgs {
		letter, err := w.recordDeadLetter(msg, p.source, msg.Metadata.Get(middleware.ReasonForPoisonedKey))
		if err != nil {
			return err
		}
		// The table is the dead-letter queue of record; a wire with a DLQ of
		// its own gets a copy.
		if err := w.deps.Work.PublishDead(msg); err != nil {
			return fmt.Errorf("dead letter %s: %w", letter.ID, err)
		}
	}
	return nil
}

// recordDeadLetter stores msg in dead_letters (idempotent by message uuid),
// to be replayed onto source.
func (w *Worker) recordDeadLetter(msg *message.Message, source, reason string) (deadletter.Letter, error) {
	var eventID *uuid.UUID
	if e, err := ingest.Decode(msg.Payload); err == nil {
		eventID = &e.ID
	}
	letter, err := w.dead.Record(msg.Context(), deadletter.Letter{
		MessageUUID: msg.UUID, EventID: eventID, Topic: source,
		Reason: reason, Payload: msg.Payload, Metadata: map[string]string(msg.Metadata),
	})
	if err != nil {
		return letter, err
	}
	w.deps.Metrics.EventsProcessed.WithLabelValues("DEAD_LETTERED").Inc()
	w.deps.Logger.Warn("message dead-lettered", "dead_letter_id", letter.ID.String(), "message_uuid", msg.UUID,
		"reason", letter.Reason, "correlation_id", msg.Metadata.Get(middleware.CorrelationIDMetadataKey))
	return letter, nil
}

func (p *deadLetterPublisher) Close() error { return nil }
