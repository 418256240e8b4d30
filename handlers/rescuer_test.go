package handlers

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/redisstream"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/replay"
)

// The rescuer reads time from its injected clock: the test moves the clock
// past StuckAfter instead of aging rows or sleeping.
func TestRescuer_RequeuesOnlyWhatIsStuckByItsClock(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	rdb, prefix := testredis.New(t)
	ctx := context.Background()
	stream := prefix + transport.EventsTopic
	pub, err := redisstream.NewRedisPublisher(rdb, nil, nil)
	require.NoError(t, err)
	events := ingest.NewStore(pool)
	replayer := replay.New(events, deadletter.NewStore(pool), transport.Sender{Pub: pub}, stream)

	e := ingest.Event{ID: uuid.Must(uuid.NewV7()), IdempotencyKey: "stuck-1", Source: "clicks", Type: "click",
		Payload: json.RawMessage(`{}`), ReceivedAt: time.Now().UTC()}
	outcome, _, err := events.Claim(ctx, e) // a worker claimed it, then died
	require.NoError(t, err)
	require.Equal(t, ingest.Claimed, outcome)

	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	metrics := observability.NewMetrics()
	r := newRescuer(replayer, 30*time.Second, time.Hour, func() time.Time { return time.Unix(0, clock.Load()) }, metrics, slog.New(slog.DiscardHandler))

	n, err := r.runOnce(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "not stuck yet by the clock")

	clock.Add(int64(31 * time.Second))
	n, err = r.runOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	rec, err := events.Get(ctx, e.ID)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusPending, rec.Status)
	length, err := rdb.XLen(ctx, stream).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, length, "its message is on the work stream again")

	// The rescue stamped the row with the database's time: back at that time,
	// it is fresh again.
	clock.Store(time.Now().UnixNano())
	n, err = r.runOnce(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
}
