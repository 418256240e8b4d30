package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RelayConfig configures the outbox relay.
type RelayConfig struct {
	// BatchMax bounds the rows one transaction publishes and deletes (default
	// 100: a row is a log message of up to 128 KiB).
	BatchMax int
	Logger   *slog.Logger
}

// RelayPollInterval is how often an idle relay looks for new outbox rows.
const RelayPollInterval = 100 * time.Millisecond

// Relay moves outbox rows to their destination topic in batches: in one
// transaction it locks the oldest BatchMax rows, publishes them in offset
// order (one Publish call per run of rows with the same topic, which a
// pipelining publisher sends in one round trip), deletes them and commits.
//
// Watermill's forwarder, which wrote the rows (forwarder.NewPublisher in
// publishTx), relays one row per transaction; at 1,200 log events a second
// under load it fell behind. Rows keep the forwarder's envelope, so either
// can read them.
//
// Each row is published once by one relay: concurrent relays wait for each
// other's row locks and skip rows deleted meanwhile. A failed publish or
// commit rolls the batch back and it is published again (at least once:
// consumers of LogTopic deduplicate by event id).
type Relay struct {
	pool *pgxpool.Pool
	out  message.Publisher
	cfg  RelayConfig
}

// NewRelay returns a relay publishing through out.
func NewRelay(pool *pgxpool.Pool, out message.Publisher, cfg RelayConfig) *Relay {
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{pool: pool, out: out, cfg: cfg}
}

// relayBatchTimeout bounds one batch. A batch in progress when Drain's
// context ends is finished within it rather than cut short: its rows would
// be published again.
const relayBatchTimeout = 30 * time.Second

// Drain relays batch after batch while they come full, until ctx ends; run
// it every RelayPollInterval (a periodic.Loop). A failure is logged, and the
// next Drain tries again.
func (r *Relay) Drain(ctx context.Context) {
	for ctx.Err() == nil {
		batchCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), relayBatchTimeout)
		n, err := r.RunOnce(batchCtx)
		cancel()
		if err != nil {
			r.cfg.Logger.Warn("outbox relay", "error", err)
			return
		}
		if n < r.cfg.BatchMax {
			return
		}
	}
}

// RunOnce relays one batch and returns how many rows it published.
func (r *Relay) RunOnce(ctx context.Context) (int, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin relay: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, `SELECT "offset", payload FROM outbox ORDER BY "offset" LIMIT $1 FOR UPDATE`, r.cfg.BatchMax)
	if err != nil {
		return 0, fmt.Errorf("lock outbox rows: %w", err)
	}
	var offsets []int64
	var batch []relayed
	for rows.Next() {
		var offset int64
		var raw []byte
		if err := rows.Scan(&offset, &raw); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read outbox row: %w", err)
		}
		topic, msg, err := unwrap(raw)
		if err != nil {
			rows.Close()
			return 0, fmt.Errorf("outbox row %d: %w", offset, err)
		}
		msg.SetContext(ctx)
		offsets = append(offsets, offset)
		batch = append(batch, relayed{topic: topic, msg: msg})
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read outbox rows: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	if err := r.publish(batch); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM outbox WHERE "offset" = ANY($1)`, offsets); err != nil {
		return 0, fmt.Errorf("delete relayed outbox rows: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit relay: %w", err)
	}
	return len(batch), nil
}

type relayed struct {
	topic string
	msg   *message.Message
}

// publish sends the batch in order, one Publish call per run of one topic.
func (r *Relay) publish(batch []relayed) error {
	for start := 0; start < len(batch); {
		end := start + 1
		for end < len(batch) && batch[end].topic == batch[start].topic {
			end++
		}
		msgs := make([]*message.Message, 0, end-start)
		for _, b := range batch[start:end] {
			msgs = append(msgs, b.msg)
		}
		if err := r.out.Publish(batch[start].topic, msgs...); err != nil {
			return fmt.Errorf("publish %d outbox rows to %s: %w", len(msgs), batch[start].topic, err)
		}
		start = end
	}
	return nil
}

// envelope is watermill's forwarder envelope (components/forwarder,
// messageEnvelope), the payload of every outbox row. Its layout is private
// to watermill: the relay tests write rows through the forwarder's own
// publisher and read them back.
type envelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

func unwrap(raw []byte) (string, *message.Message, error) {
	var e envelope
	if err := json.Unmarshal(raw, &e); err != nil {
		return "", nil, fmt.Errorf("decode forwarder envelope: %w", err)
	}
	if e.DestinationTopic == "" || e.UUID == "" {
		return "", nil, errors.New("forwarder envelope without topic or uuid")
	}
	msg := message.NewMessage(e.UUID, e.Payload)
	for k, v := range e.Metadata {
		msg.Metadata.Set(k, v)
	}
	return e.DestinationTopic, msg, nil
}
