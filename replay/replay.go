// Package replay puts events back on the queue: an operator's replay of one
// event, the replay of dead letters, and the rescue of stuck events. It
// composes the ingest and deadletter stores with a publisher; it owns no table.
package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
)

// Publisher puts one message on a topic (the queue).
type Publisher interface {
	Publish(ctx context.Context, topic, messageUUID string, payload []byte, metadata map[string]string) error
}

// Replayer re-enqueues events.
type Replayer struct {
	events      *ingest.Store
	dead        *deadletter.Store
	pub         Publisher
	eventsTopic string
}

// New returns a Replayer publishing to eventsTopic.
func New(events *ingest.Store, dead *deadletter.Store, pub Publisher, eventsTopic string) *Replayer {
	return &Replayer{events: events, dead: dead, pub: pub, eventsTopic: eventsTopic}
}

// Event puts a FAILED, PENDING or stuck PROCESSING event back to PENDING and
// on the queue. ingest.ErrNotFound and ingest.ErrAlreadyCompleted tell the
// caller why it did not.
func (r *Replayer) Event(ctx context.Context, id uuid.UUID) (ingest.Record, error) {
	rec, err := r.events.Requeue(ctx, id)
	if err != nil {
		return ingest.Record{}, err
	}
	if err := r.enqueue(ctx, rec.Event); err != nil {
		// The row is PENDING: the rescuer enqueues it later if this publish was lost.
		return ingest.Record{}, err
	}
	return rec, nil
}

// Rescue re-enqueues events stuck in PROCESSING or PENDING since before the
// cutoff and returns how many it moved.
func (r *Replayer) Rescue(ctx context.Context, cutoff time.Time) (int, error) {
	recs, err := r.events.RescueStuck(ctx, cutoff)
	for i, rec := range recs {
		if pubErr := r.enqueue(ctx, rec.Event); pubErr != nil {
			return i, errors.Join(err, pubErr)
		}
	}
	return len(recs), err
}

// ErrAlreadyReplayed means the dead letter was replayed before.
var ErrAlreadyReplayed = errors.New("dead letter was already replayed")

// DeadLetter replays one dead letter: a letter that names a stored event
// replays that event (from its stored row); any other letter's payload is
// published again as it was, under a new message uuid.
func (r *Replayer) DeadLetter(ctx context.Context, id uuid.UUID) (deadletter.Letter, error) {
	l, err := r.dead.Get(ctx, id)
	if err != nil {
		return deadletter.Letter{}, err
	}
	if l.ReplayedAt != nil {
		return l, fmt.Errorf("dead letter %s: %w", id, ErrAlreadyReplayed)
	}
	replayed := false
	if l.EventID != nil {
		_, err := r.Event(ctx, *l.EventID)
		switch {
		case err == nil:
			replayed = true
		case errors.Is(err, ingest.ErrNotFound):
			// never stored (it failed before its first claim): republish as is
		default:
			return l, err
		}
	}
	if !replayed {
		topic := l.Topic
		if topic == "" {
			topic = r.eventsTopic
		}
		if err := r.pub.Publish(ctx, topic, uuid.NewString(), l.Payload, l.Metadata); err != nil {
			return l, fmt.Errorf("republish dead letter %s: %w", id, err)
		}
	}
	if err := r.dead.MarkReplayed(ctx, id); err != nil {
		return l, err
	}
	return r.dead.Get(ctx, id)
}

// replayAllMax bounds one replay-all call.
const replayAllMax = 10_000

// AllDeadLetters replays every waiting dead letter (up to replayAllMax) and
// returns the ids replayed and, per id, the error of those that were not.
func (r *Replayer) AllDeadLetters(ctx context.Context) ([]uuid.UUID, map[uuid.UUID]error, error) {
	var done []uuid.UUID
	failed := map[uuid.UUID]error{}
	after := uuid.Nil
	for len(done)+len(failed) < replayAllMax {
		page, more, err := r.dead.List(ctx, deadletter.ListParams{Waiting: true, After: after, Limit: 100})
		if err != nil {
			return done, failed, err
		}
		for _, l := range page {
			if _, err := r.DeadLetter(ctx, l.ID); err != nil {
				failed[l.ID] = err
			} else {
				done = append(done, l.ID)
			}
			after = l.ID
		}
		if !more {
			break
		}
	}
	return done, failed, nil
}

func (r *Replayer) enqueue(ctx context.Context, e ingest.Event) error {
	body, err := e.Encode()
	if err != nil {
		return err
	}
	md := map[string]string{}
	if e.CorrelationID != "" {
		md["correlation_id"] = e.CorrelationID
	}
	if err := r.pub.Publish(ctx, r.eventsTopic, uuid.NewString(), body, md); err != nil {
		return fmt.Errorf("enqueue event %s: %w", e.ID, err)
	}
	return nil
}
