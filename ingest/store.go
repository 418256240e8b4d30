package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/daybook/daybook/archive"
)

// Errors the store translates from the database.
var (
	ErrNotFound         = errors.New("ingestion event not found")
	ErrAlreadyCompleted = errors.New("ingestion event is already COMPLETED")
	ErrTransition       = errors.New("ingestion event transition not allowed")
)

// Record is an event as stored, with its processing state.
type Record struct {
	Event
	Status    Status
	Attempts  int
	Replays   int
	LastError string
	CreatedAt time.Time
	UpdatedAt time.Time
	// Archive is where the event's archived record lies: set in the commit
	// that made it COMPLETED, nil before that and for events completed before
	// segments existed (migration 0006).
	Archive *archive.Pointer
}

// Store reads and writes table ingestion_events. It is the only code that does.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// ClaimOutcome says what Claim found.
type ClaimOutcome int

const (
	// Claimed: the event is now PROCESSING and this caller owns the attempt.
	Claimed ClaimOutcome = iota
	// Duplicate: another event already holds this idempotency key.
	Duplicate
	// NotClaimable: the event exists but is COMPLETED, FAILED or being processed elsewhere.
	NotClaimable
)

// Claim stores the event if it is new and moves it PENDING -> PROCESSING,
// counting one attempt (see ClaimMany).
func (s *Store) Claim(ctx context.Context, e Event) (ClaimOutcome, Record, error) {
	res, err := s.ClaimMany(ctx, []Event{e})
	if err != nil {
		return 0, Record{}, err
	}
	return res[0].Outcome, res[0].Record, nil
}

// ClaimResult is what ClaimMany found for one event. For Claimed, Record is
// the event now PROCESSING; otherwise it is the stored event that says why not.
type ClaimResult struct {
	Outcome ClaimOutcome
	Record  Record
}

// claimBatchMax bounds one ClaimMany.
const claimBatchMax = 1000

// ClaimMany stores the events that are new (INSERT ... ON CONFLICT DO
// NOTHING on the idempotency key, the exact second layer behind Redis) and
// moves every PENDING one to PROCESSING, counting one attempt, in one
// implicit transaction and one round trip (a second one reads the stored
// rows of events that could not be claimed). The events must have distinct ids.
func (s *Store) ClaimMany(ctx context.Context, events []Event) ([]ClaimResult, error) {
	if len(events) == 0 {
		return nil, nil
	}
	if len(events) > claimBatchMax {
		return nil, fmt.Errorf("claim %d events: at most %d at once", len(events), claimBatchMax)
	}
	n := len(events)
	columns := eventColumnArrays(events)
	batch := &pgx.Batch{}
	// No conflict target: two claims of one new event race on the primary key too.
	batch.Queue(`INSERT INTO ingestion_events (`+eventColumns+`)
		SELECT `+eventValues+` FROM unnest(`+eventArrays+`) AS u(`+eventAliases+`)
		ORDER BY id
		ON CONFLICT DO NOTHING`, columns...)
	claimed := map[uuid.UUID]Record{}
	batch.Queue(`UPDATE ingestion_events SET status = 'PROCESSING', attempts = attempts + 1
		WHERE (id, idempotency_key) IN (SELECT * FROM unnest($1::uuid[], $2::text[])) AND status = 'PENDING'
		RETURNING `+recordColumns, columns[0], columns[1]).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			rec, err := scanRecord(rows)
			if err != nil {
				return err
			}
			claimed[rec.ID] = rec
		}
		return rows.Err()
	})
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("claim %d events: %w", n, translate(err))
	}
	// Only events that were not claimed need their stored row, to say why:
	// the usual batch of new events costs no second round trip.
	var missing []string
	for _, e := range events {
		if _, ok := claimed[e.ID]; !ok {
			missing = append(missing, e.IdempotencyKey)
		}
	}
	byKey := map[string]Record{}
	if len(missing) > 0 {
		rows, err := s.pool.Query(ctx, `SELECT `+recordColumns+` FROM ingestion_events WHERE idempotency_key = ANY($1)`, missing)
		if err != nil {
			return nil, fmt.Errorf("claim %d events: %w", n, err)
		}
		recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Record, error) { return scanRecord(r) })
		if err != nil {
			return nil, fmt.Errorf("claim %d events: %w", n, err)
		}
		for _, rec := range recs {
			byKey[rec.IdempotencyKey] = rec
		}
	}
	out := make([]ClaimResult, n)
	for i, e := range events {
		if rec, ok := claimed[e.ID]; ok {
			out[i] = ClaimResult{Outcome: Claimed, Record: rec}
			continue
		}
		existing, ok := byKey[e.IdempotencyKey]
		switch {
		case !ok:
			return nil, fmt.Errorf("claim event %s: its id is stored under another idempotency key", e.ID)
		case existing.ID != e.ID:
			out[i] = ClaimResult{Outcome: Duplicate, Record: existing}
		default:
			out[i] = ClaimResult{Outcome: NotClaimable, Record: existing}
		}
	}
	return out, nil
}

// The columns an event brings to its row, and how an insert takes them from
// unnest(eventArrays) AS u(eventAliases); eventColumnArrays builds the arrays.
const (
	eventColumns = `id, idempotency_key, source, type, order_id, payload, occurred_at, received_at, correlation_id, api_key_id`
	eventValues  = `id, key, src, typ, nullif(ord, ''), payload::jsonb, occ, rcv, nullif(cid, ''), nullif(kid, '')`
	eventArrays  = `$1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[]`
	eventAliases = `id, key, src, typ, ord, payload, occ, rcv, cid, kid`
)

// eventColumnArrays is events as one array per column of eventColumns.
func eventColumnArrays(events []Event) []any {
	n := len(events)
	ids, keys, sources, types, orders := make([]uuid.UUID, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	payloads, correlations, apiKeys := make([]string, n), make([]string, n), make([]string, n)
	occurred, received := make([]*time.Time, n), make([]time.Time, n)
	for i, e := range events {
		ids[i], keys[i], sources[i], types[i], orders[i] = e.ID, e.IdempotencyKey, e.Source, e.Type, e.OrderID
		payloads[i], correlations[i], occurred[i], received[i] = string(e.Payload), e.CorrelationID, e.OccurredAt, e.ReceivedAt
		apiKeys[i] = e.APIKeyID
	}
	return []any{ids, keys, sources, types, orders, payloads, occurred, received, correlations, apiKeys}
}

// ArchivedEvent is an event processed at first sight and where its record
// is archived: what InsertCompletedTx stores.
type ArchivedEvent struct {
	Event
	Archive archive.Pointer
}

// InsertCompletedTx stores, inside tx, events that this transaction
// processes the first time the queue hands them over: each inserted
// COMPLETED at its first attempt, with its archive pointer, unless a row
// already holds its id or its idempotency key. It reports which were
// inserted; the others were seen before (or are duplicates) and take the
// recorded path (ClaimMany). The database admits no other status on insert.
func (s *Store) InsertCompletedTx(ctx context.Context, tx pgx.Tx, events []ArchivedEvent) ([]bool, error) {
	if len(events) == 0 {
		return nil, nil
	}
	if len(events) > claimBatchMax {
		return nil, fmt.Errorf("insert %d completed events: at most %d at once", len(events), claimBatchMax)
	}
	plain := make([]Event, len(events))
	refs := make([]ArchivedRef, len(events))
	for i, e := range events {
		plain[i], refs[i] = e.Event, ArchivedRef{ID: e.ID, Archive: e.Archive}
	}
	pointers, err := pointerArrays(refs)
	if err != nil {
		return nil, err
	}
	args := append(eventColumnArrays(plain), pointers[1:]...)
	rows, err := tx.Query(ctx, `INSERT INTO ingestion_events (`+eventColumns+`,
			status, attempts, archive_segment, archive_offset, archive_length, archive_sha256)
		SELECT `+eventValues+`, 'COMPLETED', 1, seg, off, len, sha256
		FROM unnest(`+eventArrays+`, $11::text[], $12::bigint[], $13::integer[], $14::bytea[])
			AS u(`+eventAliases+`, seg, off, len, sha256)
		ORDER BY id
		ON CONFLICT DO NOTHING
		RETURNING id`, args...)
	if err != nil {
		return nil, fmt.Errorf("insert %d completed events: %w", len(events), err)
	}
	inserted := make(map[uuid.UUID]bool, len(events))
	var id uuid.UUID
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { inserted[id] = true; return nil }); err != nil {
		return nil, fmt.Errorf("insert %d completed events: %w", len(events), translate(err))
	}
	out := make([]bool, len(events))
	for i, e := range events {
		out[i] = inserted[e.ID]
	}
	return out, nil
}

// pointerArrays is the archive pointers of refs as the arrays ids,
// segments, offsets, lengths and hashes; it refuses a pointer that is not whole.
func pointerArrays(refs []ArchivedRef) ([]any, error) {
	n := len(refs)
	ids, segments, offsets, lengths, hashes := make([]uuid.UUID, n), make([]string, n), make([]int64, n), make([]int32, n), make([][]byte, n)
	for i, d := range refs {
		if d.Archive.Segment == "" || d.Archive.Offset < 0 || d.Archive.Length <= 0 || d.Archive.Length > math.MaxInt32 {
			return nil, fmt.Errorf("event %s: archive pointer %s is not whole", d.ID, d.Archive)
		}
		ids[i], segments[i], offsets[i], lengths[i] = d.ID, d.Archive.Segment, d.Archive.Offset, int32(d.Archive.Length)
		hashes[i] = d.Archive.SHA256[:]
	}
	return []any{ids, segments, offsets, lengths, hashes}, nil
}

// FinishAttemptParams identifies one attempt: the compare-and-set that ends it
// only matches while the event is still PROCESSING with that attempt number,
// so a rescued or replayed event can never be overwritten by a late worker.
type FinishAttemptParams struct {
	ID       uuid.UUID
	Attempts int
	Error    string
}

// CompleteTx moves the attempt to COMPLETED inside tx. ok is false when the
// attempt no longer owns the event.
func (s *Store) CompleteTx(ctx context.Context, tx pgx.Tx, p FinishAttemptParams) (ok bool, err error) {
	return s.finish(ctx, tx, p, StatusCompleted)
}

// OwnedTx locks the events of these attempts (in id order, so concurrent
// batches cannot deadlock) and reports, per attempt, whether it still owns
// its event: PROCESSING with the same attempt number. Until tx ends nobody
// else can move them, so the caller writes effects only for owned ones.
func (s *Store) OwnedTx(ctx context.Context, tx pgx.Tx, attempts []FinishAttemptParams) ([]bool, error) {
	ids := make([]uuid.UUID, len(attempts))
	for i, a := range attempts {
		ids[i] = a.ID
	}
	rows, err := tx.Query(ctx, `SELECT id, attempts FROM ingestion_events
		WHERE id = ANY($1) AND status = 'PROCESSING' ORDER BY id FOR UPDATE`, ids)
	if err != nil {
		return nil, fmt.Errorf("lock %d events: %w", len(ids), err)
	}
	current := map[uuid.UUID]int{}
	var id uuid.UUID
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { current[id] = n; return nil }); err != nil {
		return nil, fmt.Errorf("lock %d events: %w", len(ids), err)
	}
	owned := make([]bool, len(attempts))
	for i, a := range attempts {
		n, ok := current[a.ID]
		owned[i] = ok && n == a.Attempts
	}
	return owned, nil
}

// ArchivedRef is an event and where its record is archived: what
// CompleteOwnedTx records for an attempt OwnedTx confirmed, and what
// ListArchived reads back.
type ArchivedRef struct {
	ID      uuid.UUID
	Archive archive.Pointer
}

// CompleteOwnedTx moves events whose attempts OwnedTx confirmed to
// COMPLETED and records, in that same UPDATE, where each one's record is
// archived: the database refuses to set or change a pointer at any other
// moment, so a row never points at bytes of an attempt that did not commit.
func (s *Store) CompleteOwnedTx(ctx context.Context, tx pgx.Tx, done []ArchivedRef) error {
	if !CanTransition(StatusProcessing, StatusCompleted) {
		return fmt.Errorf("complete: PROCESSING -> COMPLETED: %w", ErrTransition)
	}
	n := len(done)
	pointers, err := pointerArrays(done)
	if err != nil {
		return fmt.Errorf("complete: %w", err)
	}
	tag, err := tx.Exec(ctx, `UPDATE ingestion_events AS e SET status = 'COMPLETED', last_error = NULL,
			archive_segment = u.segment, archive_offset = u.off, archive_length = u.len, archive_sha256 = u.sha256
		FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::integer[], $5::bytea[]) AS u(id, segment, off, len, sha256)
		WHERE e.id = u.id AND e.status = 'PROCESSING'`, pointers...)
	if err != nil {
		return fmt.Errorf("complete %d events: %w", n, translate(err))
	}
	if int(tag.RowsAffected()) != n {
		// OwnedTx holds their locks: anything else is a bug, and the caller rolls back.
		return fmt.Errorf("complete %d events: %d were PROCESSING", n, tag.RowsAffected())
	}
	return nil
}

// Retry moves a failed attempt back to PENDING with its error, to be tried again.
func (s *Store) Retry(ctx context.Context, p FinishAttemptParams) (bool, error) {
	return s.finish(ctx, s.pool, p, StatusPending)
}

// Fail moves the attempt to FAILED for good (until a replay).
func (s *Store) Fail(ctx context.Context, p FinishAttemptParams) (bool, error) {
	return s.finish(ctx, s.pool, p, StatusFailed)
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func (s *Store) finish(ctx context.Context, db execer, p FinishAttemptParams, to Status) (bool, error) {
	if !CanTransition(StatusProcessing, to) {
		return false, fmt.Errorf("finish attempt of %s: PROCESSING -> %s: %w", p.ID, to, ErrTransition)
	}
	tag, err := db.Exec(ctx, `UPDATE ingestion_events SET status = $3, last_error = nullif($4, '')
		WHERE id = $1 AND status = 'PROCESSING' AND attempts = $2`, p.ID, p.Attempts, string(to), p.Error)
	if err != nil {
		return false, fmt.Errorf("mark %s %s: %w", p.ID, to, translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

// Requeue puts an event back to PENDING so that it can be enqueued again:
// FAILED starts over with 0 attempts (a replay), PROCESSING and PENDING keep
// their attempts (a rescue). A COMPLETED event is refused.
func (s *Store) Requeue(ctx context.Context, id uuid.UUID) (Record, error) {
	rec, err := s.Get(ctx, id)
	if err != nil {
		return Record{}, err
	}
	return s.requeue(ctx, rec)
}

func (s *Store) requeue(ctx context.Context, rec Record) (Record, error) {
	if rec.Status == StatusCompleted {
		return Record{}, fmt.Errorf("requeue %s: %w", rec.ID, ErrAlreadyCompleted)
	}
	if !CanTransition(rec.Status, StatusPending) {
		return Record{}, fmt.Errorf("requeue %s from %s: %w", rec.ID, rec.Status, ErrTransition)
	}
	attempts, replays := rec.Attempts, rec.Replays
	if rec.Status == StatusFailed {
		attempts, replays = 0, rec.Replays+1
	}
	row := s.pool.QueryRow(ctx, `UPDATE ingestion_events SET status = 'PENDING', attempts = $4, replays = $5
		WHERE id = $1 AND status = $2 AND attempts = $3
		RETURNING `+recordColumns, rec.ID, string(rec.Status), rec.Attempts, attempts, replays)
	out, err := scanRecord(row)
	if errors.Is(err, pgx.ErrNoRows) {
		// It moved while we looked: report its state now.
		now, getErr := s.Get(ctx, rec.ID)
		if getErr != nil {
			return Record{}, getErr
		}
		if now.Status == StatusCompleted {
			return Record{}, fmt.Errorf("requeue %s: %w", rec.ID, ErrAlreadyCompleted)
		}
		return Record{}, fmt.Errorf("requeue %s: it changed concurrently (now %s): %w", rec.ID, now.Status, ErrTransition)
	}
	if err != nil {
		return Record{}, fmt.Errorf("requeue %s: %w", rec.ID, translate(err))
	}
	return out, nil
}

// stuckBatchMax bounds how many events one rescue pass moves.
const stuckBatchMax = 500

// RescueStuck requeues events that sat in PROCESSING or PENDING since before
// the cutoff (a worker died mid-attempt, or a re-enqueue was lost) and
// returns them so the caller can enqueue them again. Each move is a
// compare-and-set on status and attempts: a COMPLETED row is never touched.
// The caller's clock sets the cutoff, so a test moves time instead of aging rows.
func (s *Store) RescueStuck(ctx context.Context, cutoff time.Time) ([]Record, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+recordColumns+` FROM ingestion_events
		WHERE status IN ('PROCESSING', 'PENDING') AND updated_at < $1
		ORDER BY updated_at LIMIT $2`, cutoff, stuckBatchMax)
	if err != nil {
		return nil, fmt.Errorf("find stuck events: %w", err)
	}
	stuck, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Record, error) { return scanRecord(r) })
	if err != nil {
		return nil, fmt.Errorf("find stuck events: %w", err)
	}
	var rescued []Record
	for _, rec := range stuck {
		out, err := s.requeue(ctx, rec)
		if errors.Is(err, ErrAlreadyCompleted) || errors.Is(err, ErrTransition) {
			continue // finished or moved meanwhile: nothing to rescue
		}
		if err != nil {
			return rescued, err
		}
		rescued = append(rescued, out)
	}
	return rescued, nil
}

// Get returns one event by id.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (Record, error) {
	rec, err := scanRecord(s.pool.QueryRow(ctx, `SELECT `+recordColumns+` FROM ingestion_events WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Record{}, fmt.Errorf("get event %s: %w", id, err)
	}
	return rec, nil
}

// GetByKey returns the event holding an idempotency key.
func (s *Store) GetByKey(ctx context.Context, key string) (Record, error) {
	rec, err := scanRecord(s.pool.QueryRow(ctx, `SELECT `+recordColumns+` FROM ingestion_events WHERE idempotency_key = $1`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, fmt.Errorf("event with key %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return Record{}, fmt.Errorf("get event by key: %w", err)
	}
	return rec, nil
}

// IDsByKeys returns the ids of the stored events among keys, by key; keys
// not stored are absent from the map.
func (s *Store) IDsByKeys(ctx context.Context, keys []string) (map[string]uuid.UUID, error) {
	rows, err := s.pool.Query(ctx, `SELECT idempotency_key, id FROM ingestion_events WHERE idempotency_key = ANY($1)`, keys)
	if err != nil {
		return nil, fmt.Errorf("ids by keys: %w", err)
	}
	ids := make(map[string]uuid.UUID, len(keys))
	var key string
	var id uuid.UUID
	if _, err := pgx.ForEachRow(rows, []any{&key, &id}, func() error { ids[key] = id; return nil }); err != nil {
		return nil, fmt.Errorf("ids by keys: %w", err)
	}
	return ids, nil
}

// ListParams selects a page of events in arrival order.
type ListParams struct {
	Status Status    // empty = every status
	After  uuid.UUID // keyset cursor: the last id of the previous page
	Limit  int
}

// ListLimitMax bounds one page.
const ListLimitMax = 500

// List returns a page of events and whether more follow.
func (s *Store) List(ctx context.Context, p ListParams) ([]Record, bool, error) {
	if p.Limit <= 0 || p.Limit > ListLimitMax {
		p.Limit = ListLimitMax
	}
	rows, err := s.pool.Query(ctx, `SELECT `+recordColumns+` FROM ingestion_events
		WHERE ($1 = '' OR status = $1) AND id > $2
		ORDER BY id LIMIT $3`, string(p.Status), p.After, p.Limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("list events: %w", err)
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Record, error) { return scanRecord(r) })
	if err != nil {
		return nil, false, fmt.Errorf("list events: %w", err)
	}
	more := len(recs) > p.Limit
	if more {
		recs = recs[:p.Limit]
	}
	return recs, more, nil
}

// ArchivedParams selects a page of COMPLETED events that have an archive
// pointer, in id order.
type ArchivedParams struct {
	After uuid.UUID // keyset cursor: the last id of the previous page
	// CompletedSince keeps events completed at or after it (updated_at, which
	// the trigger stamps on the move to COMPLETED and never changes after);
	// the zero time keeps all.
	CompletedSince time.Time
	Limit          int
}

// ListArchived returns a page of archived events and whether more follow.
func (s *Store) ListArchived(ctx context.Context, p ArchivedParams) ([]ArchivedRef, bool, error) {
	if p.Limit <= 0 || p.Limit > ListLimitMax {
		p.Limit = ListLimitMax
	}
	rows, err := s.pool.Query(ctx, `SELECT id, archive_segment, archive_offset, archive_length, archive_sha256
		FROM ingestion_events
		WHERE status = 'COMPLETED' AND archive_segment IS NOT NULL AND id > $1 AND updated_at >= $2
		ORDER BY id LIMIT $3`, p.After, p.CompletedSince, p.Limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("list archived events: %w", err)
	}
	refs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ArchivedRef, error) {
		var ref ArchivedRef
		var segment *string
		var offset *int64
		var length *int32
		var hash []byte
		if err := r.Scan(&ref.ID, &segment, &offset, &length, &hash); err != nil {
			return ref, err
		}
		p, err := pointerFrom(ref.ID, segment, offset, length, hash)
		if err == nil && p == nil {
			err = fmt.Errorf("event %s: no archive pointer", ref.ID)
		}
		if err != nil {
			return ref, err
		}
		ref.Archive = *p
		return ref, nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("list archived events: %w", err)
	}
	more := len(refs) > p.Limit
	if more {
		refs = refs[:p.Limit]
	}
	return refs, more, nil
}

// CountUnarchived counts the COMPLETED events completed at or after since
// that have no archive pointer: those completed before segments existed.
func (s *Store) CountUnarchived(ctx context.Context, since time.Time) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM ingestion_events
		WHERE status = 'COMPLETED' AND archive_segment IS NULL AND updated_at >= $1`, since).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count unarchived events: %w", err)
	}
	return n, nil
}

const recordColumns = `id, idempotency_key, source, type, coalesce(order_id, ''), payload, occurred_at, received_at,
	coalesce(correlation_id, ''), coalesce(api_key_id, ''), status, attempts, replays, coalesce(last_error, ''), created_at, updated_at,
	archive_segment, archive_offset, archive_length, archive_sha256`

func scanRecord(row pgx.Row) (Record, error) {
	var r Record
	var payload []byte
	var status string
	var segment *string
	var offset *int64
	var length *int32
	var hash []byte
	err := row.Scan(&r.ID, &r.IdempotencyKey, &r.Source, &r.Type, &r.OrderID, &payload, &r.OccurredAt, &r.ReceivedAt,
		&r.CorrelationID, &r.APIKeyID, &status, &r.Attempts, &r.Replays, &r.LastError, &r.CreatedAt, &r.UpdatedAt,
		&segment, &offset, &length, &hash)
	r.Payload = json.RawMessage(payload)
	r.Status = Status(status)
	if err == nil {
		r.Archive, err = pointerFrom(r.ID, segment, offset, length, hash)
	}
	return r, err
}

// pointerFrom reads the four archive columns of event id: nil when unset.
// The table's CHECKs hold them all set or all NULL, and whole.
func pointerFrom(id uuid.UUID, segment *string, offset *int64, length *int32, hash []byte) (*archive.Pointer, error) {
	if segment == nil {
		return nil, nil
	}
	if offset == nil || length == nil || len(hash) != sha256.Size {
		return nil, fmt.Errorf("event %s: archive pointer is not whole", id)
	}
	return &archive.Pointer{Segment: *segment, Offset: *offset, Length: int(*length), SHA256: [sha256.Size]byte(hash)}, nil
}

// translate maps the state-machine trigger's refusal to ErrTransition.
func translate(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23514" && pgErr.ConstraintName == "ingestion_events_state_machine" {
		return fmt.Errorf("%s: %w", pgErr.Message, ErrTransition)
	}
	return err
}
