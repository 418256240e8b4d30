package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/projections"
)

// EventTypeProcessed is the log event appended for every processed event.
const EventTypeProcessed = "ingest.event_processed"

// ErrRule marks an event that breaks a processing rule: retrying cannot help.
var ErrRule = errors.New("event breaks a processing rule")

// PermanentError is a failure that must not be retried: the event goes to
// FAILED and the dead-letter queue at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether err must not be retried.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// Outcome is what processing did with an event.
type Outcome string

const (
	OutcomeCompleted Outcome = "completed"
	// OutcomeDuplicate: another event already held the idempotency key.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeSkipped: the event was COMPLETED, FAILED or owned by another attempt.
	OutcomeSkipped Outcome = "skipped"
)

// ProcessorConfig bounds processing.
type ProcessorConfig struct {
	// MaxAttempts: the attempt with this number is the last one.
	MaxAttempts int
}

// Processor processes one event exactly once.
type Processor struct {
	pool    *pgxpool.Pool
	store   *Store
	archive archive.Store
	cfg     ProcessorConfig
}

// NewProcessor returns a Processor.
func NewProcessor(pool *pgxpool.Pool, store *Store, archive archive.Store, cfg ProcessorConfig) (*Processor, error) {
	if cfg.MaxAttempts <= 0 {
		return nil, errors.New("processor: MaxAttempts must be positive")
	}
	return &Processor{pool: pool, store: store, archive: archive, cfg: cfg}, nil
}

// Process claims the event (PENDING -> PROCESSING, one attempt), archives
// its payload, then in one transaction appends it to the event log (and so
// to the outbox), updates the orders projection and marks it COMPLETED. The
// completion is a compare-and-set on the attempt, so of two workers holding
// the same event only one commits its effects.
//
// A failed attempt puts the event back to PENDING and returns the error to be
// retried; a rule violation, or a failure of the last attempt, marks it
// FAILED and returns a *PermanentError. An attempt that lost the event to
// another (a rescue or replay took it meanwhile) changes nothing and returns
// OutcomeSkipped.
func (p *Processor) Process(ctx context.Context, e Event) (Outcome, error) {
	outcome, rec, err := p.store.Claim(ctx, e)
	if err != nil {
		return "", err
	}
	switch outcome {
	case Duplicate:
		return OutcomeDuplicate, nil
	case NotClaimable:
		return OutcomeSkipped, nil
	}
	attempt := FinishAttemptParams{ID: rec.ID, Attempts: rec.Attempts}
	if rec.Attempts > p.cfg.MaxAttempts {
		// Claimed again after its last attempt (a crash loop): stop here.
		err := fmt.Errorf("event %s: attempt %d exceeds the limit of %d", rec.ID, rec.Attempts, p.cfg.MaxAttempts)
		return p.fail(ctx, attempt, err)
	}

	err = p.attempt(ctx, rec)
	switch {
	case err == nil:
		return OutcomeCompleted, nil
	case errors.Is(err, errSuperseded):
		return OutcomeSkipped, nil
	case errors.Is(err, ErrRule) || rec.Attempts >= p.cfg.MaxAttempts:
		return p.fail(ctx, attempt, err)
	default:
		attempt.Error = err.Error()
		// Use a fresh context: the attempt's may be what expired.
		retryCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, retryErr := p.store.Retry(retryCtx, attempt); retryErr != nil {
			return "", errors.Join(err, retryErr)
		}
		return "", err
	}
}

var errSuperseded = errors.New("attempt superseded: the event was rescued or replayed meanwhile")

// fail ends the attempt as FAILED. When the attempt no longer owns the event
// (it was rescued or replayed meanwhile), the event is not FAILED and its new
// attempt decides: reporting a permanent error would dead-letter it wrongly.
func (p *Processor) fail(ctx context.Context, attempt FinishAttemptParams, cause error) (Outcome, error) {
	attempt.Error = cause.Error()
	failCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ok, err := p.store.Fail(failCtx, attempt)
	if err != nil {
		return "", errors.Join(cause, err) // not permanent: the next attempt will fail it again
	}
	if !ok {
		return OutcomeSkipped, nil
	}
	return "", &PermanentError{Err: cause}
}

func (p *Processor) attempt(ctx context.Context, rec Record) error {
	update, err := orderUpdateOf(rec.Event)
	if err != nil {
		return err
	}
	body, err := rec.Event.Encode()
	if err != nil {
		return err
	}
	if err := p.archive.PutMany(ctx, []archive.Object{{Key: archive.Key(rec.ReceivedAt, rec.Source, rec.ID.String()), Body: body}}); err != nil {
		return fmt.Errorf("archive payload: %w", err)
	}

	data, err := json.Marshal(processedData{
		EventID: rec.ID.String(), IdempotencyKey: rec.IdempotencyKey, Source: rec.Source, Type: rec.Type,
		OrderID: rec.OrderID, Payload: rec.Payload, OccurredAt: rec.OccurredAt, ReceivedAt: rec.ReceivedAt,
	})
	if err != nil {
		return fmt.Errorf("encode log event: %w", err)
	}
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		meta := map[string]string{}
		if rec.CorrelationID != "" {
			meta["correlation_id"] = rec.CorrelationID
		}
		if _, err := eventstore.AppendTx(ctx, tx, "ingest-"+rec.ID.String(), eventstore.ExpectNew,
			eventstore.NewEvent{Type: EventTypeProcessed, Data: data, Metadata: meta}); err != nil {
			if errors.Is(err, eventstore.ErrVersionConflict) {
				// Another attempt of this event (after a rescue) committed first.
				return errSuperseded
			}
			return err
		}
		if update != nil {
			if _, err := projections.ApplyOrderUpdateTx(ctx, tx, *update); err != nil {
				return err
			}
		}
		ok, err := p.store.CompleteTx(ctx, tx, FinishAttemptParams{ID: rec.ID, Attempts: rec.Attempts})
		if err != nil {
			return err
		}
		if !ok {
			return errSuperseded // rolls back the append and the projection
		}
		return nil
	})
}

// processedData is the log event's data; projections decode it on rebuild.
type processedData struct {
	EventID        string          `json:"event_id"`
	IdempotencyKey string          `json:"idempotency_key"`
	Source         string          `json:"source"`
	Type           string          `json:"type"`
	OrderID        string          `json:"order_id,omitempty"`
	Payload        json.RawMessage `json:"payload"`
	OccurredAt     *time.Time      `json:"occurred_at,omitempty"`
	ReceivedAt     time.Time       `json:"received_at"`
}

// orderUpdateOf applies the order_updates rules: an order id and a string
// payload.status are required. Other sources carry no rules here.
func orderUpdateOf(e Event) (*projections.OrderUpdate, error) {
	if e.Source != SourceOrderUpdates {
		return nil, nil
	}
	if e.OrderID == "" {
		return nil, fmt.Errorf("order_updates event needs order_id: %w", ErrRule)
	}
	var payload struct {
		Status any `json:"status"`
	}
	if err := json.Unmarshal(e.Payload, &payload); err != nil {
		return nil, fmt.Errorf("order_updates payload: %v: %w", err, ErrRule)
	}
	status, ok := payload.Status.(string)
	if !ok || status == "" || len(status) > 50 {
		return nil, fmt.Errorf("order_updates event needs payload.status, a string of 1 to 50 characters: %w", ErrRule)
	}
	at := e.ReceivedAt
	if e.OccurredAt != nil {
		at = *e.OccurredAt
	}
	return &projections.OrderUpdate{OrderID: e.OrderID, Status: status, OccurredAt: at, EventID: e.ID}, nil
}

// LogValue lets slog print an event compactly.
func (e Event) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", e.ID.String()), slog.String("source", e.Source), slog.String("type", e.Type))
}
