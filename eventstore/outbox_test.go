package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/internal/periodic"
	"github.com/daybook/daybook/internal/testdb"
)

// envelope is watermill's forwarder envelope, as the outbox row's payload holds it.
type envelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

type outboxRow struct {
	UUID     string
	Envelope envelope
	Metadata map[string]string
}

func outboxRows(t *testing.T, q eventstore.Querier) []outboxRow {
	t.Helper()
	rows, err := q.Query(t.Context(), `SELECT uuid, payload::text, metadata::text FROM outbox ORDER BY "offset"`)
	require.NoError(t, err)
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		var payload, metadata string
		require.NoError(t, rows.Scan(&r.UUID, &payload, &metadata))
		require.NoError(t, json.Unmarshal([]byte(payload), &r.Envelope))
		require.NoError(t, json.Unmarshal([]byte(metadata), &r.Metadata))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

// loggedEvents are the events the outbox rows carry, in offset order.
func loggedEvents(t *testing.T, q eventstore.Querier) []eventstore.LogMessage {
	t.Helper()
	var out []eventstore.LogMessage
	for _, row := range outboxRows(t, q) {
		events, err := eventstore.DecodeLog(row.Envelope.Payload)
		require.NoError(t, err)
		out = append(out, events...)
	}
	return out
}

// outboxEvents counts the events the outbox rows carry.
func outboxEvents(t *testing.T, q eventstore.Querier) int {
	t.Helper()
	return len(loggedEvents(t, q))
}

// eventIDs are the ids of the events a log message carries.
func eventIDs(t *testing.T, payload []byte) []string {
	t.Helper()
	events, err := eventstore.DecodeLog(payload)
	require.NoError(t, err)
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.EventID
	}
	return ids
}

func recordedIDs(recs []eventstore.Recorded) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.EventID.String()
	}
	return out
}

func TestAppendTx_WritesOneOutboxMessageInTheSameTransaction(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = eventstore.AppendTx(ctx, tx, "s", eventstore.ExpectNew, event("a", `{}`), event("b", `{}`), event("c", `{}`))
	require.NoError(t, err)
	require.Equal(t, 1, count(t, tx, "outbox"), "one message carries the append's events")
	require.Equal(t, 3, outboxEvents(t, tx))
	require.Zero(t, count(t, pool, "outbox"), "other sessions see no outbox row before the commit")
	require.Zero(t, count(t, pool, "event_log"))

	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 3, outboxEvents(t, pool))
	require.Equal(t, 3, count(t, pool, "event_log"))
}

func TestAppendTx_OutboxRowIsAForwarderEnvelopeOfTheAppendsEventsForTheLogTopic(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)

	recorded, err := appendCommitted(t, pool, "order-7", eventstore.ExpectNew,
		eventstore.NewEvent{Type: "order.placed", Data: json.RawMessage(`{"total":"10.50","items":[1,2]}`), Metadata: map[string]string{"correlation_id": "corr-9"}},
		event("order.paid", `{"paid":true}`), event("order.placed", `{}`))
	require.NoError(t, err)

	rows := outboxRows(t, pool)
	require.Len(t, rows, 1)
	row := rows[0]
	require.Equal(t, "daybook.log", eventstore.LogTopic)
	require.Equal(t, eventstore.LogTopic, row.Envelope.DestinationTopic)
	require.Equal(t, recorded[0].EventID.String(), row.Envelope.UUID, "the message's uuid is its first event's id")
	require.NotEqual(t, row.Envelope.UUID, row.UUID, "the envelope is a message of its own")
	require.Equal(t, map[string]string{}, row.Metadata)
	require.Equal(t, map[string]string{
		eventstore.MetaEventTypes:   "order.placed,order.paid",
		eventstore.MetaEventCount:   "3",
		eventstore.MetaPosition:     strconv.FormatInt(recorded[0].Position, 10),
		eventstore.MetaLastPosition: strconv.FormatInt(recorded[2].Position, 10),
	}, row.Envelope.Metadata)

	events, err := eventstore.DecodeLog(row.Envelope.Payload)
	require.NoError(t, err)
	require.Len(t, events, 3)
	for i, msg := range events {
		r := recorded[i]
		require.Equal(t, r.EventID.String(), msg.EventID)
		require.Equal(t, "order-7", msg.StreamID)
		require.Equal(t, int64(i+1), msg.Version)
		require.Equal(t, r.Position, msg.Position)
		require.Equal(t, r.Type, msg.Type)
		require.JSONEq(t, string(r.Data), string(msg.Data))
		require.True(t, r.RecordedAt.Equal(msg.RecordedAt), "recorded_at %s vs %s", r.RecordedAt, msg.RecordedAt)
	}
	require.Equal(t, map[string]string{"correlation_id": "corr-9"}, events[0].Metadata, "each event keeps its own metadata")
	require.Empty(t, events[1].Metadata)
}

// A message of one event names it whole in its metadata, as every message
// did before messages carried batches.
func TestAppendTx_AMessageOfOneEventNamesItInItsMetadata(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	recorded, err := appendCommitted(t, pool, "acct-1", eventstore.ExpectNew,
		eventstore.NewEvent{Type: "account.opened", Data: json.RawMessage(`{}`), Metadata: map[string]string{"correlation_id": "c-1"}})
	require.NoError(t, err)
	rows := outboxRows(t, pool)
	require.Len(t, rows, 1)
	position := strconv.FormatInt(recorded[0].Position, 10)
	require.Equal(t, map[string]string{
		"correlation_id":            "c-1",
		eventstore.MetaEventType:    "account.opened",
		eventstore.MetaStreamID:     "acct-1",
		eventstore.MetaVersion:      "1",
		eventstore.MetaEventTypes:   "account.opened",
		eventstore.MetaEventCount:   "1",
		eventstore.MetaPosition:     position,
		eventstore.MetaLastPosition: position,
	}, rows[0].Envelope.Metadata)
}

// Events are packed into messages of at most 128 KiB, in log order, each
// event in exactly one; an event larger than that travels alone.
func TestAppendTx_SplitsTheAppendIntoMessagesOfAtMost128KiB(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	blob := func(kib int) string { return fmt.Sprintf(`{"blob":%q}`, strings.Repeat("x", kib<<10)) }
	events := []eventstore.NewEvent{
		event("a", blob(40)), event("a", blob(40)), event("a", blob(40)), // 120 KiB and a little: one message
		event("a", blob(40)), event("a", `{}`), // the next
		event("big", blob(200)), // alone
		event("a", `{}`),
	}
	recorded, err := appendCommitted(t, pool, "s", eventstore.ExpectNew, events...)
	require.NoError(t, err)

	rows := outboxRows(t, pool)
	var counts []int
	var ids []string
	for _, row := range rows {
		got := eventIDs(t, row.Envelope.Payload)
		counts = append(counts, len(got))
		ids = append(ids, got...)
		if len(got) > 1 {
			require.LessOrEqual(t, len(row.Envelope.Payload), 128<<10)
		}
		require.Equal(t, got[0], row.Envelope.UUID)
		require.Equal(t, strconv.Itoa(len(got)), row.Envelope.Metadata[eventstore.MetaEventCount])
	}
	require.Equal(t, []int{3, 2, 1, 1}, counts)
	require.Equal(t, recordedIDs(recorded), ids, "each event once, in log order")
}

// DecodeLog reads both payloads: a batch, and the single event every message
// carried before (an outbox or a stream may hold such after an upgrade).
func TestDecodeLog_ReadsBatchesAndTheEarlierSingleEventPayload(t *testing.T) {
	t.Parallel()
	single := `{"event_id":"e-1","stream_id":"s","stream_version":1,"position":7,"event_type":"t","data":{"n":1},"recorded_at":"2026-12-03T10:00:00Z"}`
	events, err := eventstore.DecodeLog([]byte(single))
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, "e-1", events[0].EventID)
	require.Equal(t, int64(7), events[0].Position)
	require.JSONEq(t, `{"n":1}`, string(events[0].Data))

	events, err = eventstore.DecodeLog([]byte(`{"events":[` + single + `,` + strings.Replace(single, "e-1", "e-2", 1) + `]}`))
	require.NoError(t, err)
	require.Equal(t, []string{"e-1", "e-2"}, []string{events[0].EventID, events[1].EventID})

	for name, bad := range map[string]string{
		"not json":     `{"events":[`,
		"empty batch":  `{"events":[]}`,
		"no event":     `{"position":3}`,
		"events wrong": `{"events":{"event_id":"e-1"}}`,
	} {
		_, err := eventstore.DecodeLog([]byte(bad))
		require.Error(t, err, name)
	}
}

// LogEventTypes reads the types a message names, old and new metadata alike.
func TestLogEventTypes_ReadsWhatAMessageNames(t *testing.T) {
	t.Parallel()
	md := message.Metadata{eventstore.MetaEventTypes: "a,b"}
	types, named := eventstore.LogEventTypes(md)
	require.True(t, named)
	require.Equal(t, []string{"a", "b"}, types)

	types, named = eventstore.LogEventTypes(message.Metadata{eventstore.MetaEventType: "a"})
	require.True(t, named)
	require.Equal(t, []string{"a"}, types)

	_, named = eventstore.LogEventTypes(message.Metadata{})
	require.False(t, named)
}

func TestBacklog_CountsOutboxMessagesNotYetPublished(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()

	n, err := eventstore.Backlog(ctx, pool)
	require.NoError(t, err)
	require.Zero(t, n)

	for i := range 3 {
		_, err = appendCommitted(t, pool, fmt.Sprintf("s-%d", i), eventstore.ExpectNew, event("a", `{}`), event("b", `{}`))
		require.NoError(t, err)
	}
	n, err = eventstore.Backlog(ctx, pool)
	require.NoError(t, err)
	require.EqualValues(t, 3, n)

	// The relay deletes a row once it is published.
	_, err = pool.Exec(ctx, `DELETE FROM outbox WHERE "offset" = (SELECT min("offset") FROM outbox)`)
	require.NoError(t, err)
	n, err = eventstore.Backlog(ctx, pool)
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
}

func TestRelay_PublishesEachAppendsMessageToTheLogTopicAndEmptiesTheOutbox(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()
	logger := watermill.NopLogger{}

	var recorded [][]eventstore.Recorded
	for i := range 2 {
		r, err := appendCommitted(t, pool, fmt.Sprintf("s-%d", i), eventstore.ExpectNew, event("a", `{"n":1}`), event("b", `{"n":2}`))
		require.NoError(t, err)
		recorded = append(recorded, r)
	}

	// Blocking until each message is acked: gochannel otherwise delivers the
	// messages of one Publish call from goroutines of their own, in any order.
	out := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 10, BlockPublishUntilSubscriberAck: true}, logger)
	defer func() { require.NoError(t, out.Close()) }()
	published, err := out.Subscribe(ctx, eventstore.LogTopic)
	require.NoError(t, err)

	relay := &periodic.Loop{Interval: 10 * time.Millisecond, Immediate: true, Fn: eventstore.NewRelay(pool, out, eventstore.RelayConfig{}).Drain}
	relay.Start(context.Background())
	defer relay.Stop()

	for i := range recorded {
		select {
		case msg := <-published:
			msg.Ack()
			require.Equal(t, recorded[i][0].EventID.String(), msg.UUID)
			require.Equal(t, "a,b", msg.Metadata.Get(eventstore.MetaEventTypes))
			events, err := eventstore.DecodeLog(msg.Payload)
			require.NoError(t, err)
			require.Len(t, events, 2)
			require.Equal(t, recorded[i][1].Position, events[1].Position)
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d was never published", i)
		}
	}
	require.Eventually(t, func() bool {
		n, err := eventstore.Backlog(ctx, pool)
		return err == nil && n == 0
	}, 10*time.Second, 10*time.Millisecond, "published rows are deleted from the outbox")
}

// recordingPublisher records what it publishes, in order; it fails while
// failing is set.
type recordingPublisher struct {
	mu        sync.Mutex
	published []string // the ids of the events the messages carry
	calls     int
	failing   bool
}

func (p *recordingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.failing {
		return errors.New("broker down")
	}
	if topic != eventstore.LogTopic {
		return fmt.Errorf("unexpected topic %q", topic)
	}
	for _, m := range msgs {
		events, err := eventstore.DecodeLog(m.Payload)
		if err != nil {
			return err
		}
		for _, e := range events {
			p.published = append(p.published, e.EventID)
		}
	}
	return nil
}

func (p *recordingPublisher) Close() error { return nil }

// Rows written through watermill's forwarder publisher are relayed in
// batches: two relays at once publish every row exactly once, in offset
// order, one Publish call per batch.
func TestRelay_TwoRelaysPublishEveryRowOnceInOffsetOrder(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	var want []string
	for s := range 200 {
		events := make([]eventstore.NewEvent, 5)
		for i := range events {
			events[i] = event("bench.event", fmt.Sprintf(`{"s":%d,"i":%d}`, s, i))
		}
		recorded, err := appendCommitted(t, pool, fmt.Sprintf("s%d", s), eventstore.ExpectNew, events...)
		require.NoError(t, err)
		want = append(want, recordedIDs(recorded)...)
	}
	out := &recordingPublisher{}
	relays := []*eventstore.Relay{
		eventstore.NewRelay(pool, out, eventstore.RelayConfig{BatchMax: 16}),
		eventstore.NewRelay(pool, out, eventstore.RelayConfig{BatchMax: 16}),
	}
	var wg sync.WaitGroup
	for _, r := range relays {
		wg.Go(func() {
			for {
				n, err := r.RunOnce(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, want, out.published, "each row once, in the order of the log")
	require.LessOrEqual(t, out.calls, 200/16+2+2, "one Publish call per batch")
	n, err := eventstore.Backlog(t.Context(), pool)
	require.NoError(t, err)
	require.Zero(t, n)
}

// A batch whose publish fails is rolled back whole: nothing is deleted, and
// the next run publishes it all.
func TestRelay_FailedPublishKeepsTheBatchForTheNextRun(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	var want []string
	for i := range 3 {
		recorded, err := appendCommitted(t, pool, fmt.Sprintf("s-%d", i), eventstore.ExpectNew, event("a", `{}`), event("b", `{}`))
		require.NoError(t, err)
		want = append(want, recordedIDs(recorded)...)
	}
	out := &recordingPublisher{failing: true}
	relay := eventstore.NewRelay(pool, out, eventstore.RelayConfig{BatchMax: 2})

	_, err := relay.RunOnce(t.Context())
	require.ErrorContains(t, err, "broker down")
	n, err := eventstore.Backlog(t.Context(), pool)
	require.NoError(t, err)
	require.EqualValues(t, 3, n, "nothing deleted")

	out.failing = false
	for {
		n, err := relay.RunOnce(t.Context())
		require.NoError(t, err)
		if n == 0 {
			break
		}
	}
	require.Equal(t, want, out.published)
}

// The outbox rows are watermill's own: watermill-sql's subscriber reads them
// from table outbox and watermill's forwarder publishes each event to the log
// topic, in log order, as a deployment without our relay would.
func TestOutboxRows_AreRelayedByWatermillsOwnForwarder(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()
	var recorded [][]eventstore.Recorded
	for i := range 3 {
		r, err := appendCommitted(t, pool, fmt.Sprintf("stream-%d", i), eventstore.ExpectNew,
			event("a", fmt.Sprintf(`{"n":%d}`, i)), event("b", fmt.Sprintf(`{"n":%d}`, i)))
		require.NoError(t, err)
		recorded = append(recorded, r)
	}

	logger := watermill.NopLogger{}
	table := func(string) string { return "outbox" }
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(pool), wsql.SubscriberConfig{
		SchemaAdapter:  wsql.PostgreSQLQueueSchema{GenerateMessagesTableName: table},
		OffsetsAdapter: wsql.PostgreSQLQueueOffsetsAdapter{GenerateMessagesTableName: table, DeleteOnAck: true},
		PollInterval:   10 * time.Millisecond,
	}, logger)
	require.NoError(t, err)
	// Blocking publishes keep the order: gochannel otherwise hands each
	// message to its subscriber from a goroutine of its own.
	out := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, logger)
	defer func() { _ = out.Close() }()
	published, err := out.Subscribe(ctx, eventstore.LogTopic)
	require.NoError(t, err)
	// daybook_outbox is the forwarder topic eventstore writes the rows under.
	fwd, err := forwarder.NewForwarder(sub, out, logger, forwarder.Config{ForwarderTopic: "daybook_outbox"})
	require.NoError(t, err)
	go func() { _ = fwd.Run(context.WithoutCancel(ctx)) }()
	defer func() { _ = fwd.Close() }()

	for i, r := range recorded {
		select {
		case msg := <-published:
			require.Equal(t, r[0].EventID.String(), msg.UUID, "message %d in log order", i)
			events, err := eventstore.DecodeLog(msg.Payload)
			require.NoError(t, err)
			require.Len(t, events, len(r))
			for k := range r {
				require.Equal(t, r[k].Position, events[k].Position)
				require.JSONEq(t, string(r[k].Data), string(events[k].Data))
			}
			msg.Ack()
		case <-time.After(10 * time.Second):
			t.Fatalf("watermill's forwarder published %d of %d messages", i, len(recorded))
		}
	}
	require.Eventually(t, func() bool { return count(t, pool, "outbox") == 0 }, 10*time.Second, 20*time.Millisecond,
		"every row deleted once forwarded")
}

// An outbox row carries up to 128 KiB of events: Postgres compresses its
// payload with lz4 where the server has it (migration 0008).
func TestOutbox_PayloadIsCompressedWithLZ4(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `CREATE TEMP TABLE lz4_probe (x text COMPRESSION lz4)`); err != nil {
		t.Skipf("this server has no lz4: %v", err)
	}
	var method string
	require.NoError(t, pool.QueryRow(ctx, `SELECT attcompression::text FROM pg_attribute
		WHERE attrelid = 'outbox'::regclass AND attname = 'payload'`).Scan(&method))
	require.Equal(t, "l", method)

	_, err := appendCommitted(t, pool, "s", eventstore.ExpectNew, event("a", fmt.Sprintf(`{"blob":%q}`, strings.Repeat("ab", 20_000))))
	require.NoError(t, err)
	require.NoError(t, pool.QueryRow(ctx, `SELECT pg_column_compression(payload) FROM outbox`).Scan(&method))
	require.Equal(t, "lz4", method)
}
