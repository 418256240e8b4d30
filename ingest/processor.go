package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/logevent"
	"github.com/daybook/daybook/projections"
)

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
	// Logger hears why a first-sight transaction failed (its events then
	// take the recorded path, which records their own failures); nil
	// discards it.
	Logger *slog.Logger
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Processor{pool: pool, store: store, archive: archive, cfg: cfg}, nil
}

// Process processes one event: ProcessBatch of one.
func (p *Processor) Process(ctx context.Context, e Event) (Outcome, error) {
	r := p.ProcessBatch(ctx, []Event{e})[0]
	return r.Outcome, r.Err
}

// BatchResult is one event's outcome within a batch: an Outcome, or an error
// (a *PermanentError when it must not be retried).
type BatchResult struct {
	Outcome Outcome
	Err     error
}

// BatchSizeMax bounds one ProcessBatch.
const BatchSizeMax = 500

// Delivery is an event as the queue handed it over.
type Delivery struct {
	Event
	// First: the queue hands it over for the first time, so no attempt at it
	// can have begun, let alone crashed midway. Only such an event may be
	// completed at first sight.
	First bool
	// Raw is the message body Event was decoded from, if known: archived as
	// it came when it fits on one line, instead of encoding Event again.
	Raw []byte
}

// ProcessBatch processes events as redeliveries: every one takes the
// recorded path (see ProcessDeliveries).
func (p *Processor) ProcessBatch(ctx context.Context, events []Event) []BatchResult {
	deliveries := make([]Delivery, len(events))
	for i, e := range events {
		deliveries[i] = Delivery{Event: e}
	}
	return p.ProcessDeliveries(ctx, deliveries)
}

// ProcessDeliveries processes a batch of events, each exactly once, and
// returns each its own result. Batching changes no outcome, only how many
// events share a round trip, a commit and a segment.
//
// Events delivered for the first time are completed at first sight: one
// transaction inserts them COMPLETED with their log entries, outbox rows and
// projection updates. Those it cannot take (a row already holds the id or
// the key, a rule is broken, the transaction fails) and redeliveries take
// the recorded path, where every state is committed: each is claimed
// (PENDING -> PROCESSING, one attempt), archived, then completed in a
// transaction of its own batch. Completion is a compare-and-set on each
// attempt: of two workers holding the same event only one commits its
// effects.
//
// On the recorded path a failed attempt puts its event back to PENDING and
// returns the error to be retried; a rule violation, or a failure of the
// last attempt, marks it FAILED and returns a *PermanentError. An attempt
// that lost its event to another (a rescue or replay took it meanwhile)
// changes nothing and returns OutcomeSkipped. When the shared transaction
// fails, each event is retried in a transaction of its own, so one bad
// event fails alone.
//
// A crash during the first-sight transaction leaves no trace but the queue's
// message, which comes back as a redelivery and so takes the recorded path:
// an event that crashes its worker still counts its attempts and ends FAILED.
func (p *Processor) ProcessDeliveries(ctx context.Context, deliveries []Delivery) []BatchResult {
	results := make([]BatchResult, len(deliveries))
	if len(deliveries) > BatchSizeMax {
		for i := range results {
			results[i].Err = fmt.Errorf("process %d events: at most %d at once", len(deliveries), BatchSizeMax)
		}
		return results
	}
	// A second copy of an event in the same batch is the first's duplicate
	// delivery: it is skipped, as it would be after the first finished.
	seen := map[uuid.UUID]bool{}
	var firsts []Delivery
	var firstAt []int
	var unique []Event
	var at []int
	for i, d := range deliveries {
		if seen[d.ID] {
			results[i].Outcome = OutcomeSkipped
			continue
		}
		seen[d.ID] = true
		if d.First {
			firsts, firstAt = append(firsts, d), append(firstAt, i)
			continue
		}
		unique, at = append(unique, d.Event), append(at, i)
	}
	for k, done := range p.completeAtFirstSight(ctx, firsts) {
		if done {
			results[firstAt[k]].Outcome = OutcomeCompleted
			continue
		}
		unique, at = append(unique, firsts[k].Event), append(at, firstAt[k])
	}
	if len(unique) == 0 {
		return results
	}
	claims, err := p.store.ClaimMany(ctx, unique)
	if err != nil {
		for _, i := range at {
			results[i].Err = err
		}
		return results
	}

	var work []task
	for j, c := range claims {
		i := at[j]
		switch c.Outcome {
		case Duplicate:
			results[i].Outcome = OutcomeDuplicate
			continue
		case NotClaimable:
			if c.Record.Status == StatusFailed {
				// Its message comes again: the process that failed it died before
				// the dead letter was recorded (or recorded it, and this is a
				// redelivery). Failing it again lets the poison queue record the
				// letter, at most once per message, so no FAILED event is left
				// out of the dead-letter queue.
				results[i].Err = &PermanentError{Err: fmt.Errorf("event %s is already FAILED: %s", c.Record.ID, c.Record.LastError)}
				continue
			}
			results[i].Outcome = OutcomeSkipped
			continue
		}
		t := task{index: i, rec: c.Record}
		if t.rec.Attempts > p.cfg.MaxAttempts {
			// Claimed again after its last attempt (a crash loop): stop here.
			results[i] = p.fail(ctx, t.attempt(), fmt.Errorf("event %s: attempt %d exceeds the limit of %d", t.rec.ID, t.rec.Attempts, p.cfg.MaxAttempts))
			continue
		}
		if t.update, err = orderUpdateOf(t.rec.Event); err == nil {
			t.data, err = logData(t.rec)
		}
		if err != nil {
			results[i] = p.failed(ctx, t, err)
			continue
		}
		work = append(work, t)
	}
	if len(work) == 0 {
		return results
	}

	// Each event's archive line; one that cannot be archived fails alone.
	lines := make([][]byte, 0, len(work))
	kept := work[:0]
	for _, t := range work {
		line, err := archiveLine(t.rec)
		if err != nil {
			results[t.index] = p.failed(ctx, t, err)
			continue
		}
		kept = append(kept, t)
		lines = append(lines, line)
	}
	work = kept
	if len(work) == 0 {
		return results
	}
	if err := p.archiveSegments(ctx, work, lines); err != nil {
		for _, t := range work {
			results[t.index] = p.failed(ctx, t, fmt.Errorf("archive payload: %w", err))
		}
		return results
	}

	owned, err := p.commit(ctx, work)
	if err != nil && len(work) > 1 {
		for _, t := range work {
			owned, err := p.commit(ctx, []task{t})
			results[t.index] = p.outcome(ctx, t, err == nil && owned[0], err)
		}
		return results
	}
	for k, t := range work {
		results[t.index] = p.outcome(ctx, t, err == nil && owned[k], err)
	}
	return results
}

// task is one claimed event on its way through a batch.
type task struct {
	index  int
	rec    Record
	update *projections.OrderUpdate
	data   []byte
	// archived is where this attempt archived the event's record.
	archived archive.Pointer
}

func (t task) attempt() FinishAttemptParams {
	return FinishAttemptParams{ID: t.rec.ID, Attempts: t.rec.Attempts}
}

// outcome maps the commit's answer for one task.
func (p *Processor) outcome(ctx context.Context, t task, owned bool, err error) BatchResult {
	switch {
	case errors.Is(err, eventstore.ErrVersionConflict):
		return BatchResult{Outcome: OutcomeSkipped} // another attempt of this event committed first
	case err != nil:
		return p.failed(ctx, t, err)
	case !owned:
		return BatchResult{Outcome: OutcomeSkipped} // rescued or replayed meanwhile
	}
	return BatchResult{Outcome: OutcomeCompleted}
}

// commit writes the effects of the attempts that still own their events,
// in one transaction, and reports which did. It runs once their segment is
// durable, and only it writes pointers, so a committed row always points at
// bytes that exist: a commit that fails and is retried event by event
// reuses the same segment, each row pointing at its own line.
func (p *Processor) commit(ctx context.Context, work []task) ([]bool, error) {
	var owned []bool
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		attempts := make([]FinishAttemptParams, len(work))
		for k, t := range work {
			attempts[k] = t.attempt()
		}
		var err error
		if owned, err = p.store.OwnedTx(ctx, tx, attempts); err != nil {
			return err
		}
		var mine []task
		var done []ArchivedRef
		for k, t := range work {
			if !owned[k] {
				continue // rescued or replayed meanwhile: its new attempt decides
			}
			mine = append(mine, t)
			done = append(done, ArchivedRef{ID: t.rec.ID, Archive: t.archived})
		}
		if len(done) == 0 {
			return nil
		}
		if err := writeEffects(ctx, tx, mine); err != nil {
			return err
		}
		return p.store.CompleteOwnedTx(ctx, tx, done)
	})
	return owned, err
}

// writeEffects appends each task's log entry (and so its outbox row) and
// applies its orders update, inside tx.
func writeEffects(ctx context.Context, tx pgx.Tx, work []task) error {
	appends := make([]eventstore.Append, 0, len(work))
	var updates []projections.OrderUpdate
	for _, t := range work {
		meta := map[string]string{}
		if t.rec.CorrelationID != "" {
			meta["correlation_id"] = t.rec.CorrelationID
		}
		appends = append(appends, eventstore.Append{
			StreamID: "ingest-" + t.rec.ID.String(), ExpectedVersion: eventstore.ExpectNew,
			Events: []eventstore.NewEvent{{Type: logevent.TypeEventProcessed, Data: t.data, Metadata: meta}},
		})
		if t.update != nil {
			updates = append(updates, *t.update)
		}
	}
	if _, err := eventstore.AppendManyTx(ctx, tx, appends); err != nil {
		return err
	}
	if len(updates) > 0 {
		if _, err := projections.ApplyOrderUpdatesTx(ctx, tx, updates); err != nil {
			return err
		}
	}
	return nil
}

// firstSightFailed reports a first-sight attempt that failed as a whole: its
// events are not lost (the recorded path takes them), but each costs a
// second round of work, which an operator must be able to see.
func (p *Processor) firstSightFailed(ctx context.Context, events int, err error) {
	p.cfg.Logger.WarnContext(ctx, "first-sight transaction failed; its events take the recorded path",
		"events", events, "error", err)
}

// completeAtFirstSight archives events delivered for the first time and,
// in one transaction, inserts them COMPLETED with their effects. It reports
// which it completed; the rest go on to the recorded path, which decides
// what they are (seen before, duplicates, breaking a rule) and records
// every failure. Nothing of a failed transaction stays but its segment,
// which no row points at.
func (p *Processor) completeAtFirstSight(ctx context.Context, deliveries []Delivery) []bool {
	completed := make([]bool, len(deliveries))
	var work []task
	var lines [][]byte
	for i, d := range deliveries {
		t := task{index: i, rec: Record{Event: d.Event, Status: StatusProcessing, Attempts: 1}}
		var err error
		if t.update, err = orderUpdateOf(d.Event); err != nil {
			continue
		}
		if t.data, err = logData(t.rec); err != nil {
			continue
		}
		line := d.Raw
		if archive.CheckLine(line) != nil {
			if line, err = archiveLine(t.rec); err != nil {
				continue
			}
		}
		work, lines = append(work, t), append(lines, line)
	}
	if len(work) == 0 {
		return completed
	}
	if err := p.archiveSegments(ctx, work, lines); err != nil {
		p.firstSightFailed(ctx, len(work), err)
		return completed
	}
	var inserted []task
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		rows := make([]ArchivedEvent, len(work))
		for k, t := range work {
			rows[k] = ArchivedEvent{Event: t.rec.Event, Archive: t.archived}
		}
		stored, err := p.store.InsertCompletedTx(ctx, tx, rows)
		if err != nil {
			return err
		}
		inserted = inserted[:0]
		for k, t := range work {
			if stored[k] {
				inserted = append(inserted, t)
			}
		}
		if len(inserted) == 0 {
			return nil
		}
		return writeEffects(ctx, tx, inserted)
	})
	if err != nil {
		p.firstSightFailed(ctx, len(work), err)
		return completed
	}
	for _, t := range inserted {
		completed[t.index] = true
	}
	return completed
}

// failed ends a failed attempt: FAILED for good after a rule violation or
// on the last attempt, else back to PENDING to be retried.
func (p *Processor) failed(ctx context.Context, t task, cause error) BatchResult {
	if errors.Is(cause, ErrRule) || t.rec.Attempts >= p.cfg.MaxAttempts {
		return p.fail(ctx, t.attempt(), cause)
	}
	attempt := t.attempt()
	attempt.Error = cause.Error()
	// A fresh context: the attempt's may be what expired.
	retryCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := p.store.Retry(retryCtx, attempt); err != nil {
		return BatchResult{Err: errors.Join(cause, err)}
	}
	return BatchResult{Err: cause}
}

// fail ends the attempt as FAILED. When the attempt no longer owns the event
// (it was rescued or replayed meanwhile), the event is not FAILED and its new
// attempt decides: reporting a permanent error would dead-letter it wrongly.
func (p *Processor) fail(ctx context.Context, attempt FinishAttemptParams, cause error) BatchResult {
	attempt.Error = cause.Error()
	failCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ok, err := p.store.Fail(failCtx, attempt)
	if err != nil {
		return BatchResult{Err: errors.Join(cause, err)} // not permanent: the next attempt will fail it again
	}
	if !ok {
		return BatchResult{Outcome: OutcomeSkipped}
	}
	return BatchResult{Err: &PermanentError{Err: cause}}
}

// archiveLine is what is archived of an event: its queue encoding, one line
// of compact JSON (encoding/json escapes any newline inside a string). A
// record the segment cannot hold breaks a rule: retrying cannot shrink it.
func archiveLine(rec Record) ([]byte, error) {
	line, err := rec.Encode()
	if err != nil {
		return nil, err
	}
	if err := archive.CheckLine(line); err != nil {
		return nil, fmt.Errorf("archive event %s: %w", rec.ID, errors.Join(err, ErrRule))
	}
	return line, nil
}

// archiveSegments writes the lines of work into one segment, or more when
// the batch outgrows archive.SegmentBytesMax (only for events near the size
// limit), stores them and records in each task where its line lies.
//
// Every attempt writes segments under new keys. When its commit then fails
// (or the attempt lost its event), its segments stay behind, unreferenced:
// harmless garbage, since a pointer is only written by the commit of the
// attempt that archived the bytes. Nothing collects them yet.
func (p *Processor) archiveSegments(ctx context.Context, work []task, lines [][]byte) error {
	now := time.Now()
	var w *archive.SegmentWriter
	put := func() error {
		body, err := w.Close()
		if err != nil {
			return err
		}
		return p.archive.PutSegment(ctx, w.Key(), body)
	}
	for k, line := range lines {
		if w == nil || !w.Fits(len(line)) {
			if w != nil {
				if err := put(); err != nil {
					return err
				}
			}
			key, err := archive.SegmentKey(now)
			if err != nil {
				return err
			}
			w = archive.NewSegmentWriter(key)
		}
		ptr, err := w.Append(line)
		if err != nil {
			return err
		}
		work[k].archived = ptr
	}
	return put()
}

// ErrNotArchived marks an event that has no archived record to read back:
// it is not COMPLETED yet, or it was completed before records were archived
// in segments (migration 0006), when no pointer was kept.
var ErrNotArchived = errors.New("event has no segment pointer")

// ReadArchived reads back the record that the attempt which completed rec
// archived: the line its pointer names, checked against the recorded SHA-256
// and against rec's id. It never returns other bytes than those archived:
// a missing segment wraps archive.ErrNotFound, and bytes that do not match
// wrap archive.ErrCorrupt.
func ReadArchived(ctx context.Context, a archive.Store, rec Record) (Event, error) {
	if rec.Archive == nil {
		if rec.Status == StatusCompleted {
			return Event{}, fmt.Errorf("event %s was completed before payloads were archived in segments: %w", rec.ID, ErrNotArchived)
		}
		return Event{}, fmt.Errorf("event %s is %s: its payload is archived once it is COMPLETED: %w", rec.ID, rec.Status, ErrNotArchived)
	}
	line, err := archive.ReadLine(ctx, a, *rec.Archive)
	if err != nil {
		return Event{}, fmt.Errorf("event %s: %w", rec.ID, err)
	}
	return DecodeArchived(rec.ID, line)
}

// DecodeArchived parses an archived line that must be event id's record.
func DecodeArchived(id uuid.UUID, line []byte) (Event, error) {
	e, err := Decode(line)
	if err != nil {
		return Event{}, fmt.Errorf("event %s: %w: %w", id, archive.ErrCorrupt, err)
	}
	if e.ID != id {
		return Event{}, fmt.Errorf("event %s: %w: the archived record is event %s's", id, archive.ErrCorrupt, e.ID)
	}
	return e, nil
}

func logData(rec Record) ([]byte, error) {
	data, err := json.Marshal(logevent.EventProcessed{
		EventID: rec.ID, IdempotencyKey: rec.IdempotencyKey, Source: rec.Source, Type: rec.Type,
		OrderID: rec.OrderID, Payload: rec.Payload, OccurredAt: rec.OccurredAt, ReceivedAt: rec.ReceivedAt,
	})
	if err != nil {
		return nil, fmt.Errorf("encode log event: %w", err)
	}
	return data, nil
}

// orderUpdateOf applies the order_updates rules: an order id and a string
// payload.status are required. Other sources carry no rules here.
func orderUpdateOf(e Event) (*projections.OrderUpdate, error) {
	if e.Source != logevent.SourceOrderUpdates {
		return nil, nil
	}
	if e.OrderID == "" {
		return nil, fmt.Errorf("order_updates event needs order_id: %w", ErrRule)
	}
	var payload struct {
		Status any `json:"status"`
	}
	if err := json.Unmarshal(e.Payload, &payload); err != nil {
		return nil, fmt.Errorf("order_updates payload: %w", errors.Join(err, ErrRule))
	}
	status, ok := payload.Status.(string)
	if !ok || status == "" || len(status) > logevent.OrderStatusLengthMax {
		return nil, fmt.Errorf("order_updates event needs payload.status, a string of 1 to %d characters: %w", logevent.OrderStatusLengthMax, ErrRule)
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
