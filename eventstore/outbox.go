package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
)

// outboxTopic is the forwarder's topic; its messages live in table outbox.
const outboxTopic = "daybook_outbox"

// Metadata keys of a log message. Every message names what it carries:
// MetaEventTypes (its distinct event types, comma-separated, in log order),
// MetaEventCount, and the log positions MetaPosition (its first event's)
// and MetaLastPosition. A message of one event also carries MetaEventType,
// MetaStreamID, MetaVersion and that event's own metadata.
const (
	MetaEventTypes   = "event_types"
	MetaEventCount   = "event_count"
	MetaPosition     = "position"
	MetaLastPosition = "last_position"
	MetaEventType    = "event_type"
	MetaStreamID     = "stream_id"
	MetaVersion      = "stream_version"
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

// LogMessage is one appended event as it travels on LogTopic.
type LogMessage struct {
	EventID    string            `json:"event_id"`
	StreamID   string            `json:"stream_id"`
	Version    int64             `json:"stream_version"`
	Position   int64             `json:"position"`
	Type       string            `json:"event_type"`
	Data       json.RawMessage   `json:"data"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	RecordedAt time.Time         `json:"recorded_at"`
}

// LogBatch is the payload of every message on LogTopic: events of one
// append, in log order. One message carries many events because a message
// per event cost the worker, Postgres and Redis more than the events' own
// writes did (docs/PERFORMANCE.md): one outbox row, one relayed entry and
// one consumer delivery now serve a whole batch of ingested events.
type LogBatch struct {
	Events []LogMessage `json:"events"`
}

// logMessageMaxBytes bounds one log message's payload, so that it fits an
// SNS or SQS message (256 KiB with its attributes) and a relay batch stays
// small. An event larger than this travels alone.
const logMessageMaxBytes = 128 << 10

// DecodeLog returns the events a log message carries, in log order. It also
// reads the payload written before messages carried batches (one bare
// LogMessage), which an outbox or a stream may still hold after an upgrade.
func DecodeLog(payload []byte) ([]LogMessage, error) {
	// One decode reads either shape: a batch fills Events, a bare event the
	// embedded fields.
	var either struct {
		Events *[]LogMessage `json:"events"`
		LogMessage
	}
	if err := json.Unmarshal(payload, &either); err != nil {
		return nil, fmt.Errorf("decode log message: %w", err)
	}
	switch {
	case either.Events != nil && len(*either.Events) > 0:
		return *either.Events, nil
	case either.Events != nil:
		return nil, errors.New("decode log message: no events")
	case either.EventID == "":
		return nil, errors.New("decode log message: neither events nor an event id")
	}
	return []LogMessage{either.LogMessage}, nil
}

// LogEventTypes returns the event types a log message's metadata names, and
// false when it names none (a message written before batches named one
// type under MetaEventType; one naming nothing must be decoded to be known).
func LogEventTypes(md message.Metadata) ([]string, bool) {
	if types := md.Get(MetaEventTypes); types != "" {
		return strings.Split(types, ","), true
	}
	if t := md.Get(MetaEventType); t != "" {
		return []string{t}, true
	}
	return nil, false
}

// publishTx writes the recorded events to the outbox, bound to tx, so that
// the publish commits or rolls back with the append: as few log messages as
// logMessageMaxBytes allows, each a LogBatch of consecutive events.
func publishTx(ctx context.Context, tx pgx.Tx, recorded []*Recorded) error {
	pub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: outboxSchema}, watermill.NopLogger{})
	if err != nil {
		return fmt.Errorf("outbox publisher: %w", err)
	}
	out := forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: outboxTopic})
	encoded := make([][]byte, len(recorded))
	for i, r := range recorded {
		if encoded[i], err = json.Marshal(LogMessage{
			EventID: r.EventID.String(), StreamID: r.StreamID, Version: r.Version, Position: r.Position,
			Type: r.Type, Data: r.Data, Metadata: r.Metadata, RecordedAt: r.RecordedAt,
		}); err != nil {
			return fmt.Errorf("encode log message: %w", err)
		}
	}
	var msgs []*message.Message
	for start := 0; start < len(recorded); {
		end, size := start+1, len(encoded[start])
		for end < len(recorded) && size+1+len(encoded[end]) <= logMessageMaxBytes {
			size += 1 + len(encoded[end])
			end++
		}
		msg := logBatchMessage(recorded[start:end], encoded[start:end], size)
		msg.SetContext(ctx)
		msgs = append(msgs, msg)
		start = end
	}
	if err := out.Publish(LogTopic, msgs...); err != nil {
		return fmt.Errorf("write outbox: %w", err)
	}
	return nil
}

// logBatchMessage is one log message of the given events, each already
// encoded (size bytes with the commas between them). Its uuid is the first
// event's id, so a message relayed twice is the same message.
func logBatchMessage(events []*Recorded, encoded [][]byte, size int) *message.Message {
	const head, tail = `{"events":[`, `]}`
	payload := make([]byte, 0, len(head)+size+len(tail))
	payload = append(payload, head...)
	var types []string
	for i, e := range encoded {
		if i > 0 {
			payload = append(payload, ',')
		}
		payload = append(payload, e...)
		if !slices.Contains(types, events[i].Type) {
			types = append(types, events[i].Type)
		}
	}
	payload = append(payload, tail...)

	first, last := events[0], events[len(events)-1]
	msg := message.NewMessage(first.EventID.String(), payload)
	if len(events) == 1 {
		for k, v := range first.Metadata {
			msg.Metadata.Set(k, v)
		}
		msg.Metadata.Set(MetaEventType, first.Type)
		msg.Metadata.Set(MetaStreamID, first.StreamID)
		msg.Metadata.Set(MetaVersion, strconv.FormatInt(first.Version, 10))
	}
	msg.Metadata.Set(MetaEventTypes, strings.Join(types, ","))
	msg.Metadata.Set(MetaEventCount, strconv.Itoa(len(events)))
	msg.Metadata.Set(MetaPosition, strconv.FormatInt(first.Position, 10))
	msg.Metadata.Set(MetaLastPosition, strconv.FormatInt(last.Position, 10))
	return msg
}

// Backlog counts outbox messages not yet published.
func Backlog(ctx context.Context, q Querier) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count outbox: %w", err)
	}
	return n, nil
}
