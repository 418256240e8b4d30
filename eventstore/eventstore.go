package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/daybook/daybook/transport"
)

// LogTopic is where the outbox relay publishes every appended event.
const LogTopic = transport.LogTopic

// ExpectNew is the expected version of a stream that must not exist yet.
const ExpectNew int64 = 0

// appendBatchMax bounds how many events one append may carry.
const appendBatchMax = 1000

// ErrVersionConflict means another writer appended to the stream first.
var ErrVersionConflict = errors.New("event stream version conflict")

// NewEvent is an event about to be appended.
type NewEvent struct {
	Type     string
	Data     json.RawMessage
	Metadata map[string]string
}

// Recorded is an event as the log holds it.
type Recorded struct {
	Position   int64
	EventID    uuid.UUID
	StreamID   string
	Version    int64
	Type       string
	Data       json.RawMessage
	Metadata   map[string]string
	RecordedAt time.Time
}

// AppendTx appends events to streamID inside tx, expecting the stream to be
// at expectedVersion (ExpectNew for a new stream), and writes one outbox
// message per event to LogTopic in the same transaction.
func AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expectedVersion int64, events ...NewEvent) ([]Recorded, error) {
	recorded, err := AppendManyTx(ctx, tx, []Append{{StreamID: streamID, ExpectedVersion: expectedVersion, Events: events}})
	if err != nil {
		return nil, err
	}
	return recorded[0], nil
}

// Append is what AppendManyTx writes to one stream.
type Append struct {
	StreamID        string
	ExpectedVersion int64
	Events          []NewEvent
}

// AppendManyTx appends to several distinct streams with one statement and
// writes their outbox messages with another, all inside tx. Each stream is
// held to its expected version; a conflict on any fails the whole call
// (roll back). Events take log positions in the order given.
func AppendManyTx(ctx context.Context, tx pgx.Tx, appends []Append) ([][]Recorded, error) {
	total := 0
	streams := make(map[string]bool, len(appends))
	for _, a := range appends {
		total += len(a.Events)
		if a.ExpectedVersion < 0 {
			return nil, fmt.Errorf("append to %s: expected version %d is negative", a.StreamID, a.ExpectedVersion)
		}
		if streams[a.StreamID] {
			// Each row is checked against the stream as the statement found it.
			return nil, fmt.Errorf("append to %s: one call appends to a stream once", a.StreamID)
		}
		streams[a.StreamID] = true
	}
	if total > appendBatchMax {
		return nil, fmt.Errorf("append %d events: at most %d at once", total, appendBatchMax)
	}
	out := make([][]Recorded, len(appends))
	if total == 0 {
		return out, nil
	}
	all := make([]*Recorded, 0, total)
	ids, streamIDs, types := make([]uuid.UUID, 0, total), make([]string, 0, total), make([]string, 0, total)
	versions, expected := make([]int64, 0, total), make([]int64, 0, total)
	data, metadata := make([]string, 0, total), make([]string, 0, total)
	for ai, a := range appends {
		out[ai] = make([]Recorded, len(a.Events))
		for i, e := range a.Events {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, fmt.Errorf("new event id: %w", err)
			}
			if !json.Valid(e.Data) {
				return nil, fmt.Errorf("append %s: data is not valid JSON", e.Type)
			}
			md := e.Metadata
			if md == nil {
				md = map[string]string{}
			}
			mdJSON, err := json.Marshal(md)
			if err != nil {
				return nil, fmt.Errorf("append %s: metadata: %w", e.Type, err)
			}
			r := &out[ai][i]
			*r = Recorded{EventID: id, StreamID: a.StreamID, Version: a.ExpectedVersion + int64(i) + 1, Type: e.Type, Data: e.Data, Metadata: md}
			all = append(all, r)
			ids, streamIDs, types = append(ids, id), append(streamIDs, a.StreamID), append(types, e.Type)
			versions, expected = append(versions, r.Version), append(expected, a.ExpectedVersion)
			data, metadata = append(data, string(e.Data)), append(metadata, string(mdJSON))
		}
	}
	// A row goes in only while its stream ends at the expected version. The
	// UNIQUE constraint catches a stale expected version; the condition
	// catches one beyond the stream's end, which would leave a gap (a new
	// stream cannot have one, so its rows skip the lookup).
	rows, err := tx.Query(ctx, `INSERT INTO event_log (event_id, stream_id, stream_version, event_type, data, metadata)
		SELECT id, stream, version, typ, data::jsonb, md::jsonb
		FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[])
			WITH ORDINALITY AS u(id, stream, version, expected, typ, data, md, n)
		WHERE expected = 0 OR (SELECT coalesce(max(stream_version), 0) FROM event_log WHERE stream_id = u.stream) = expected
		ORDER BY n
		RETURNING event_id, position, recorded_at`,
		ids, streamIDs, versions, expected, types, data, metadata)
	if err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	type placed struct {
		position   int64
		recordedAt time.Time
	}
	got := make(map[uuid.UUID]placed, total)
	var id uuid.UUID
	var p placed
	if _, err := pgx.ForEachRow(rows, []any{&id, &p.position, &p.recordedAt}, func() error { got[id] = p; return nil }); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "event_log_stream_id_stream_version_key" {
			return nil, fmt.Errorf("append: %s: %w", pgErr.Detail, ErrVersionConflict)
		}
		return nil, fmt.Errorf("append: %w", err)
	}
	for _, r := range all {
		p, ok := got[r.EventID]
		if !ok {
			return nil, fmt.Errorf("append to %s at version %d: %w", r.StreamID, r.Version-1, ErrVersionConflict)
		}
		r.Position, r.RecordedAt = p.position, p.recordedAt
	}
	if err := publishTx(ctx, tx, all); err != nil {
		return nil, err
	}
	return out, nil
}

// StreamVersion returns the current version of a stream (0 when it has no events).
func StreamVersion(ctx context.Context, q Querier, streamID string) (int64, error) {
	var v int64
	err := q.QueryRow(ctx, `SELECT coalesce(max(stream_version), 0) FROM event_log WHERE stream_id = $1`, streamID).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("stream version of %s: %w", streamID, err)
	}
	return v, nil
}

// Querier is what reads need: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ReadStream returns a stream's events in version order.
func ReadStream(ctx context.Context, q Querier, streamID string) ([]Recorded, error) {
	rows, err := q.Query(ctx, selectRecorded+` WHERE stream_id = $1 ORDER BY stream_version`, streamID)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", streamID, err)
	}
	return collect(rows)
}

// ReadParams selects a page of the log in position order.
type ReadParams struct {
	AfterPosition int64
	// Types restricts the page to these event types; empty means all.
	Types []string
	Limit int
}

// readPageMax bounds one page of the log.
const readPageMax = 10_000

// Read returns up to Limit events after AfterPosition. Rebuilds page through
// the whole log with it.
func Read(ctx context.Context, q Querier, p ReadParams) ([]Recorded, error) {
	if p.Limit <= 0 || p.Limit > readPageMax {
		p.Limit = readPageMax
	}
	if p.Types == nil {
		p.Types = []string{} // a nil slice is sent as NULL, which would match nothing
	}
	rows, err := q.Query(ctx, selectRecorded+`
		WHERE position > $1 AND (cardinality($2::text[]) = 0 OR event_type = ANY($2))
		ORDER BY position LIMIT $3`, p.AfterPosition, p.Types, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("read log after %d: %w", p.AfterPosition, err)
	}
	return collect(rows)
}

const selectRecorded = `SELECT position, event_id, stream_id, stream_version, event_type, data, metadata, recorded_at FROM event_log`

func collect(rows pgx.Rows) ([]Recorded, error) {
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Recorded, error) {
		var r Recorded
		var data []byte
		err := row.Scan(&r.Position, &r.EventID, &r.StreamID, &r.Version, &r.Type, &data, &r.Metadata, &r.RecordedAt)
		r.Data = data
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("scan events: %w", err)
	}
	return out, nil
}
