// Package deadletter owns the dead-letter table (dead_letters): messages that
// could not be processed, decoded or not, with the reason, kept until an
// operator replays them. It knows nothing of what the messages mean.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound means no dead letter has that id.
var ErrNotFound = errors.New("dead letter not found")

// Letter is one dead-lettered message.
type Letter struct {
	ID          uuid.UUID
	MessageUUID string
	EventID     *uuid.UUID // nil when the message could not be decoded
	Topic       string
	Reason      string
	Payload     []byte
	Metadata    map[string]string
	CreatedAt   time.Time
	ReplayedAt  *time.Time
	ReplayCount int
}

// Store reads and writes dead_letters.
type Store struct{ pool *pgxpool.Pool }

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Record stores a letter once per message uuid. A message dead-lettered again
// after a replay gets a fresh row only if it carries a new uuid (a replay
// publishes a new message), so the history stays.
func (s *Store) Record(ctx context.Context, l Letter) (Letter, error) {
	if l.ID == uuid.Nil {
		id, err := uuid.NewV7()
		if err != nil {
			return Letter{}, fmt.Errorf("dead letter id: %w", err)
		}
		l.ID = id
	}
	if l.Metadata == nil {
		l.Metadata = map[string]string{}
	}
	if l.Payload == nil {
		l.Payload = []byte{} // a nil slice is sent as NULL, which the column refuses
	}
	md, err := json.Marshal(l.Metadata)
	if err != nil {
		return Letter{}, fmt.Errorf("encode dead letter metadata: %w", err)
	}
	row := s.pool.QueryRow(ctx, `INSERT INTO dead_letters (id, message_uuid, event_id, topic, reason, payload, metadata)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (message_uuid) DO UPDATE SET reason = EXCLUDED.reason
		RETURNING `+columns, l.ID, l.MessageUUID, l.EventID, l.Topic, l.Reason, l.Payload, md)
	out, err := scan(row)
	if err != nil {
		return Letter{}, fmt.Errorf("record dead letter %s: %w", l.MessageUUID, err)
	}
	return out, nil
}

// Get returns one letter.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (Letter, error) {
	l, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM dead_letters WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Letter{}, fmt.Errorf("dead letter %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Letter{}, fmt.Errorf("get dead letter %s: %w", id, err)
	}
	return l, nil
}

// LatestForEvent returns the newest letter of an event, for an event that
// was dead-lettered before it could be stored: its status is that letter.
func (s *Store) LatestForEvent(ctx context.Context, eventID uuid.UUID) (Letter, error) {
	l, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM dead_letters
		WHERE event_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1`, eventID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Letter{}, fmt.Errorf("dead letter of event %s: %w", eventID, ErrNotFound)
	}
	if err != nil {
		return Letter{}, fmt.Errorf("dead letter of event %s: %w", eventID, err)
	}
	return l, nil
}

// ListParams selects a page of letters, oldest first.
type ListParams struct {
	// Waiting limits the page to letters not yet replayed.
	Waiting bool
	After   uuid.UUID
	Limit   int
}

// ListLimitMax bounds one page.
const ListLimitMax = 500

// List returns a page and whether more follow.
func (s *Store) List(ctx context.Context, p ListParams) ([]Letter, bool, error) {
	if p.Limit <= 0 || p.Limit > ListLimitMax {
		p.Limit = ListLimitMax
	}
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM dead_letters
		WHERE id > $1 AND (NOT $2 OR replayed_at IS NULL) ORDER BY id LIMIT $3`, p.After, p.Waiting, p.Limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Letter, error) { return scan(r) })
	if err != nil {
		return nil, false, fmt.Errorf("list dead letters: %w", err)
	}
	more := len(out) > p.Limit
	if more {
		out = out[:p.Limit]
	}
	return out, more, nil
}

// Waiting counts letters not yet replayed (the DLQ depth).
func (s *Store) Waiting(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	return n, nil
}

// MarkReplayed records that a letter was put back on the queue.
func (s *Store) MarkReplayed(ctx context.Context, id uuid.UUID) error {
	tag, err := s.pool.Exec(ctx, `UPDATE dead_letters SET replayed_at = now(), replay_count = replay_count + 1 WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("mark dead letter %s replayed: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("dead letter %s: %w", id, ErrNotFound)
	}
	return nil
}

const columns = `id, message_uuid, event_id, topic, reason, payload, metadata, created_at, replayed_at, replay_count`

func scan(row pgx.Row) (Letter, error) {
	var l Letter
	err := row.Scan(&l.ID, &l.MessageUUID, &l.EventID, &l.Topic, &l.Reason, &l.Payload, &l.Metadata, &l.CreatedAt, &l.ReplayedAt, &l.ReplayCount)
	return l, err
}
