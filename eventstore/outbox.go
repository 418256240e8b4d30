package eventstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
)

// outboxTopic is the forwarder's topic; its messages live in table outbox.
const outboxTopic = "daybook_outbox"

// Metadata keys every log message carries.
const (
	MetaEventType = "event_type"
	MetaStreamID  = "stream_id"
	MetaVersion   = "stream_version"
	MetaPosition  = "position"
)

func outboxTable(string) string { return "outbox" }

var outboxSchema = unnestQueueSchema{wsql.PostgreSQLQueueSchema{GenerateMessagesTableName: outboxTable, GeneratePayloadType: func(string) string { return "JSON" }}}

// unnestQueueSchema is watermill-sql's PostgreSQL queue schema, rows and all,
// with an insert whose text does not depend on how many messages it carries:
// the stock one writes VALUES ($1,$2,$3),($4,...) for each batch size, so
// pgx prepared (and cached) a statement for every size a batch happened to
// have, and encoded three parameters per message. Rows keep the order of the
// messages, so offsets follow the log.
type unnestQueueSchema struct {
	wsql.PostgreSQLQueueSchema
}

func (s unnestQueueSchema) InsertQuery(params wsql.InsertQueryParams) (wsql.Query, error) {
	n := len(params.Msgs)
	uuids, payloads, metadata := make([]string, n), make([]string, n), make([]string, n)
	for i, msg := range params.Msgs {
		md, err := json.Marshal(msg.Metadata)
		if err != nil {
			return wsql.Query{}, fmt.Errorf("encode metadata of message %s: %w", msg.UUID, err)
		}
		uuids[i], payloads[i], metadata[i] = msg.UUID, string(msg.Payload), string(md)
	}
	return wsql.Query{
		Query: `INSERT INTO ` + s.MessagesTable(params.Topic) + ` (uuid, payload, metadata)
			SELECT id, payload::json, md::json FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(id, payload, md, n)
			ORDER BY n`,
		Args: []any{uuids, payloads, metadata},
	}, nil
}

// LogMessage is the payload published on LogTopic for each appended event.
type LogMessage struct {
	EventID    string          `json:"event_id"`
	StreamID   string          `json:"stream_id"`
	Version    int64           `json:"stream_version"`
	Position   int64           `json:"position"`
	Type       string          `json:"event_type"`
	Data       json.RawMessage `json:"data"`
	RecordedAt time.Time       `json:"recorded_at"`
}

// publishTx writes one outbox message per recorded event, bound to tx: the
// publish commits or rolls back with the append.
func publishTx(ctx context.Context, tx pgx.Tx, recorded []*Recorded) error {
	pub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: outboxSchema}, watermill.NopLogger{})
	if err != nil {
		return fmt.Errorf("outbox publisher: %w", err)
	}
	out := forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: outboxTopic})
	msgs := make([]*message.Message, len(recorded))
	for i, r := range recorded {
		payload, err := json.Marshal(LogMessage{
			EventID: r.EventID.String(), StreamID: r.StreamID, Version: r.Version, Position: r.Position,
			Type: r.Type, Data: r.Data, RecordedAt: r.RecordedAt,
		})
		if err != nil {
			return fmt.Errorf("encode log message: %w", err)
		}
		msg := message.NewMessage(r.EventID.String(), payload)
		for k, v := range r.Metadata {
			msg.Metadata.Set(k, v)
		}
		msg.Metadata.Set(MetaEventType, r.Type)
		msg.Metadata.Set(MetaStreamID, r.StreamID)
		msg.Metadata.Set(MetaVersion, strconv.FormatInt(r.Version, 10))
		msg.Metadata.Set(MetaPosition, strconv.FormatInt(r.Position, 10))
		msg.SetContext(ctx)
		msgs[i] = msg
	}
	if err := out.Publish(LogTopic, msgs...); err != nil {
		return fmt.Errorf("write outbox: %w", err)
	}
	return nil
}

// Backlog counts outbox messages not yet published.
func Backlog(ctx context.Context, q Querier) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count outbox: %w", err)
	}
	return n, nil
}
