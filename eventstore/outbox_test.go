package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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

func TestAppendTx_WritesOneOutboxRowPerEventInTheSameTransaction(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = eventstore.AppendTx(ctx, tx, "s", eventstore.ExpectNew, event("a", `{}`), event("b", `{}`), event("c", `{}`))
	require.NoError(t, err)
	require.Equal(t, 3, count(t, tx, "outbox"))
	require.Zero(t, count(t, pool, "outbox"), "other sessions see no outbox row before the commit")
	require.Zero(t, count(t, pool, "event_log"))

	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 3, count(t, pool, "outbox"))
	require.Equal(t, 3, count(t, pool, "event_log"))
}

func TestAppendTx_OutboxRowIsAForwarderEnvelopeForTheLogTopic(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)

	recorded, err := appendCommitted(t, pool, "order-7", eventstore.ExpectNew,
		eventstore.NewEvent{Type: "order.placed", Data: json.RawMessage(`{"total":"10.50","items":[1,2]}`), Metadata: map[string]string{"correlation_id": "corr-9"}},
		event("order.paid", `{"paid":true}`))
	require.NoError(t, err)

	rows := outboxRows(t, pool)
	require.Len(t, rows, 2)
	for i, row := range rows {
		r := recorded[i]
		require.Equal(t, "daybook.log", eventstore.LogTopic)
		require.Equal(t, eventstore.LogTopic, row.Envelope.DestinationTopic)
		require.Equal(t, r.EventID.String(), row.Envelope.UUID, "the published message's uuid is the event id")
		require.NotEqual(t, row.Envelope.UUID, row.UUID, "the envelope is a message of its own")
		require.Equal(t, map[string]string{}, row.Metadata)

		var msg eventstore.LogMessage
		require.NoError(t, json.Unmarshal(row.Envelope.Payload, &msg))
		require.Equal(t, r.EventID.String(), msg.EventID)
		require.Equal(t, "order-7", msg.StreamID)
		require.Equal(t, int64(i+1), msg.Version)
		require.Equal(t, r.Position, msg.Position)
		require.Equal(t, r.Type, msg.Type)
		require.JSONEq(t, string(r.Data), string(msg.Data))
		require.True(t, r.RecordedAt.Equal(msg.RecordedAt), "recorded_at %s vs %s", r.RecordedAt, msg.RecordedAt)

		want := map[string]string{
			eventstore.MetaEventType: r.Type,
			eventstore.MetaStreamID:  "order-7",
			eventstore.MetaVersion:   strconv.Itoa(i + 1),
			eventstore.MetaPosition:  strconv.FormatInt(r.Position, 10),
		}
		if i == 0 {
			want["correlation_id"] = "corr-9"
		}
		require.Equal(t, want, row.Envelope.Metadata)
	}
}

func TestBacklog_CountsOutboxRowsNotYetPublished(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()

	n, err := eventstore.Backlog(ctx, pool)
	require.NoError(t, err)
	require.Zero(t, n)

	_, err = appendCommitted(t, pool, "s", eventstore.ExpectNew, event("a", `{}`), event("b", `{}`), event("c", `{}`))
	require.NoError(t, err)
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

func TestRelay_PublishesEachAppendedEventToTheLogTopicAndEmptiesTheOutbox(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()
	logger := watermill.NopLogger{}

	recorded, err := appendCommitted(t, pool, "s", eventstore.ExpectNew, event("a", `{"n":1}`), event("b", `{"n":2}`))
	require.NoError(t, err)

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
			require.Equal(t, recorded[i].EventID.String(), msg.UUID)
			require.Equal(t, recorded[i].Type, msg.Metadata.Get(eventstore.MetaEventType))
			var lm eventstore.LogMessage
			require.NoError(t, json.Unmarshal(msg.Payload, &lm))
			require.Equal(t, recorded[i].Position, lm.Position)
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d was never published", i)
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
	published []string // event ids
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
		p.published = append(p.published, m.UUID)
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
	for s := range 4 {
		events := make([]eventstore.NewEvent, 250)
		for i := range events {
			events[i] = event("bench.event", fmt.Sprintf(`{"s":%d,"i":%d}`, s, i))
		}
		recorded, err := appendCommitted(t, pool, fmt.Sprintf("s%d", s), eventstore.ExpectNew, events...)
		require.NoError(t, err)
		for _, r := range recorded {
			want = append(want, r.EventID.String())
		}
	}
	out := &recordingPublisher{}
	relays := []*eventstore.Relay{
		eventstore.NewRelay(pool, out, eventstore.RelayConfig{BatchMax: 64}),
		eventstore.NewRelay(pool, out, eventstore.RelayConfig{BatchMax: 64}),
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
	require.LessOrEqual(t, out.calls, 1000/64+2+2, "one Publish call per batch")
	n, err := eventstore.Backlog(t.Context(), pool)
	require.NoError(t, err)
	require.Zero(t, n)
}

// A batch whose publish fails is rolled back whole: nothing is deleted, and
// the next run publishes it all.
func TestRelay_FailedPublishKeepsTheBatchForTheNextRun(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	recorded, err := appendCommitted(t, pool, "s", eventstore.ExpectNew, event("a", `{}`), event("b", `{}`), event("c", `{}`))
	require.NoError(t, err)
	out := &recordingPublisher{failing: true}
	relay := eventstore.NewRelay(pool, out, eventstore.RelayConfig{BatchMax: 2})

	_, err = relay.RunOnce(t.Context())
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
	require.Equal(t, []string{recorded[0].EventID.String(), recorded[1].EventID.String(), recorded[2].EventID.String()}, out.published)
}

// The outbox rows are watermill's own: watermill-sql's subscriber reads them
// from table outbox and watermill's forwarder publishes each event to the log
// topic, in log order, as a deployment without our relay would.
func TestOutboxRows_AreRelayedByWatermillsOwnForwarder(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := t.Context()
	var recorded []eventstore.Recorded
	for i := range 3 {
		r, err := appendCommitted(t, pool, fmt.Sprintf("stream-%d", i), eventstore.ExpectNew,
			event("a", fmt.Sprintf(`{"n":%d}`, i)), event("b", fmt.Sprintf(`{"n":%d}`, i)))
		require.NoError(t, err)
		recorded = append(recorded, r...)
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
			require.Equal(t, r.EventID.String(), msg.UUID, "message %d in log order", i)
			var lm eventstore.LogMessage
			require.NoError(t, json.Unmarshal(msg.Payload, &lm))
			require.Equal(t, r.Position, lm.Position)
			require.JSONEq(t, string(r.Data), string(lm.Data))
			msg.Ack()
		case <-time.After(10 * time.Second):
			t.Fatalf("watermill's forwarder published %d of %d events", i, len(recorded))
		}
	}
	require.Eventually(t, func() bool { return count(t, pool, "outbox") == 0 }, 10*time.Second, 20*time.Millisecond,
		"every row deleted once forwarded")
}
