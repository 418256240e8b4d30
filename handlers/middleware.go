package handlers

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/observability"
)

// errShuttingDown marks a failure caused by the worker stopping: the message
// stays unacknowledged and is redelivered, and must not be dead-lettered.
var errShuttingDown = errors.New("worker shutting down")

// drainGate counts messages in flight and, once draining, lets no new one in.
type drainGate struct {
	mu       sync.Mutex
	draining bool
	inFlight sync.WaitGroup
	count    int
}

func (d *drainGate) enter() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.draining {
		return false
	}
	d.inFlight.Add(1)
	d.count++
	return true
}

func (d *drainGate) leave() {
	d.mu.Lock()
	d.count--
	d.mu.Unlock()
	d.inFlight.Done()
}

// Middleware holds a message that arrives while draining until the router
// closes; it is then left unacknowledged and will be redelivered.
func (d *drainGate) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if !d.enter() {
			<-msg.Context().Done()
			return nil, errShuttingDown
		}
		defer d.leave()
		return h(msg)
	}
}

// Drain stops new messages and waits for those in flight, or for ctx. It
// returns how many were still in flight when it gave up.
func (d *drainGate) Drain(ctx context.Context) int {
	d.mu.Lock()
	d.draining = true
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.inFlight.Wait(); close(done) }()
	select {
	case <-done:
		return 0
	case <-ctx.Done():
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.count
	}
}

// correlation puts the message's correlation id (set by the API from the
// request) into its context, for every log line of the attempt.
func correlation(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if id := msg.Metadata.Get(middleware.CorrelationIDMetadataKey); id != "" {
			msg.SetContext(observability.WithCorrelationID(msg.Context(), id))
		}
		return h(msg)
	}
}

// markShutdown wraps the error of a message whose context ended (the router
// is closing) so the poison queue lets it pass.
func markShutdown(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err != nil && msg.Context().Err() != nil {
			return out, fmt.Errorf("%w: %w", errShuttingDown, err)
		}
		return out, err
	}
}

// deadLetterPublisher is the poison queue: it records the message in table
// dead_letters (listable and replayable) and appends it to the DLQ stream.
// Both must succeed before the message is acknowledged.
type deadLetterPublisher struct {
	worker *Worker
	// source is the topic a replay puts the message back on.
	source string
}

func (p *deadLetterPublisher) Publish(topic string, msgs ...*message.Message) error {
	w := p.worker
	for _, msg := range msgs {
		letter, err := w.recordDeadLetter(msg, p.source, msg.Metadata.Get(middleware.ReasonForPoisonedKey))
		if err != nil {
			return err
		}
		// With SQS the table is the dead-letter queue of record: SQS's own DLQ
		// holds what SQS redrove, which the worker moves into the table too.
		if w.cfg.SQS == nil {
			if err := w.publisher.Publish(topic, msg); err != nil {
				return fmt.Errorf("publish dead letter %s: %w", letter.ID, err)
			}
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
