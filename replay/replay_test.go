package replay_test

import (
	"context"
	"encoding/json"
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
	"github.com/daybook/daybook/replay"
)

// A rescue whose publish fails (here the work stream's key holds a string,
// so XADD is refused) leaves the event PENDING; the next rescue enqueues it.
func TestRescue_LostPublishIsRetriedByTheNextRescue(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	client, prefix := testredis.New(t)
	ctx := context.Background()
	stream := prefix + transport.EventsTopic
	pub, err := redisstream.NewRedisPublisher(client, nil, nil)
	require.NoError(t, err)
	events := ingest.NewStore(pool)
	r := replay.New(events, deadletter.NewStore(pool), transport.Sender{Pub: pub}, stream)

	id := uuid.Must(uuid.NewV7())
	e := ingest.Event{ID: id, IdempotencyKey: "k-" + id.String(), Source: "clicks", Type: "click",
		Payload: json.RawMessage(`{}`), ReceivedAt: time.Now().UTC()}
	outcome, _, err := events.Claim(ctx, e) // a worker claimed it, then died
	require.NoError(t, err)
	require.Equal(t, ingest.Claimed, outcome)
	later := time.Now().Add(time.Hour) // the rescuer's clock, an hour on

	require.NoError(t, client.Set(ctx, stream, "not a stream", 0).Err())
	n, err := r.Rescue(ctx, later)
	require.Error(t, err)
	require.Zero(t, n)
	rec, err := events.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusPending, rec.Status, "requeued, waiting for its message")

	require.NoError(t, client.Del(ctx, stream).Err())
	n, err = r.Rescue(ctx, later.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	entries, err := client.XRange(ctx, stream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	got, err := ingest.Decode([]byte(entries[0].Values[redisstream.FieldPayload].(string)))
	require.NoError(t, err)
	require.Equal(t, id, got.ID)
}

func TestEvent_ReplayOfCompletedOrUnknownEventIsRefused(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	client, prefix := testredis.New(t)
	pub, err := redisstream.NewRedisPublisher(client, nil, nil)
	require.NoError(t, err)
	r := replay.New(ingest.NewStore(pool), deadletter.NewStore(pool), transport.Sender{Pub: pub}, prefix+transport.EventsTopic)
	_, err = r.Event(context.Background(), uuid.Must(uuid.NewV7()))
	require.ErrorIs(t, err, ingest.ErrNotFound)
	_, err = r.DeadLetter(context.Background(), uuid.Must(uuid.NewV7()))
	require.ErrorIs(t, err, deadletter.ErrNotFound)
}
