package eventstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/internal/periodic"
	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/transport/redisstream"
)

// relayBenchEvents is how many logged events one iteration drains: 500 per
// append, as a worker's batches write them, so one row per 500 events or
// per 128 KiB of them.
const relayBenchEvents = 5000

// BenchmarkRelay_DrainsTheOutboxToARedisStream fills the outbox, then times
// the relay publishing every row to a Redis stream and emptying the table.
// It reports logged events per second.
func BenchmarkRelay_DrainsTheOutboxToARedisStream(b *testing.B) {
	pool := testdb.New(b)
	client, prefix := testredis.New(b)
	// The worker's log publisher: one pipelined round trip per batch.
	out := redisstream.PrefixedPublisher{Prefix: prefix, Pub: redisstream.NewPipelinedPublisher(client, nil)}
	ctx := context.Background()
	var drained time.Duration
	for i := range b.N {
		b.StopTimer()
		fillOutbox(b, pool, fmt.Sprintf("bench-%d", i), relayBenchEvents)
		b.StartTimer()
		start := time.Now()
		stop := runRelay(b, pool, out)
		require.Eventually(b, func() bool {
			n, err := eventstore.Backlog(ctx, pool)
			return err == nil && n == 0
		}, 5*time.Minute, 5*time.Millisecond)
		drained += time.Since(start)
		b.StopTimer()
		stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(relayBenchEvents*b.N)/drained.Seconds(), "events/s")
}

// fillOutbox appends n events to one stream, 500 per transaction.
func fillOutbox(tb testing.TB, pool *pgxpool.Pool, stream string, n int) {
	tb.Helper()
	ctx := context.Background()
	for version := int64(0); version < int64(n); version += 500 {
		events := make([]eventstore.NewEvent, min(500, int64(n)-version))
		for i := range events {
			events[i] = eventstore.NewEvent{Type: "bench.event", Data: json.RawMessage(`{"amount":"12.3400","order_id":"o-1"}`)}
		}
		tx, err := pool.Begin(ctx)
		require.NoError(tb, err)
		_, err = eventstore.AppendTx(ctx, tx, stream, version, events...)
		require.NoError(tb, err)
		require.NoError(tb, tx.Commit(ctx))
	}
}

// runRelay starts the relay; stop ends it.
func runRelay(tb testing.TB, pool *pgxpool.Pool, out message.Publisher) (stop func()) {
	tb.Helper()
	relay := &periodic.Loop{Interval: 10 * time.Millisecond, Immediate: true, Fn: eventstore.NewRelay(pool, out, eventstore.RelayConfig{}).Drain}
	relay.Start(context.Background())
	return relay.Stop
}
