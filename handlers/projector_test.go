package handlers

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/logevent"
	"github.com/daybook/daybook/projections"
	"github.com/daybook/daybook/transport/redisstream"
)

// worldAndAlice opens a world account and alice's, and moves each amount
// from world to alice under its idempotency key.
func worldAndAlice(t *testing.T, h *harness, amounts map[string]string) (book *ledger.Service, world, alice ledger.Account) {
	t.Helper()
	ctx := context.Background()
	book, err := ledger.NewService(h.pool, ledger.Config{})
	require.NoError(t, err)
	world, err = book.CreateAccount(ctx, ledger.CreateAccountParams{Name: "world", AllowNegative: true})
	require.NoError(t, err)
	alice, err = book.CreateAccount(ctx, ledger.CreateAccountParams{Name: "alice"})
	require.NoError(t, err)
	for key, amount := range amounts {
		_, _, err := book.Transfer(ctx, ledger.TransferParams{From: world.ID, To: alice.ID, Amount: decimal.RequireFromString(amount), IdempotencyKey: key})
		require.NoError(t, err)
	}
	return book, world, alice
}

// Transfers reach the daily totals through the outbox relay, daybook.log and
// the projector; a redelivered log message is applied once.
func TestProjector_FoldsLedgerPostingsIntoDailyTotalsOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	book, world, alice := worldAndAlice(t, h, map[string]string{"a": "100.50", "b": "0.25"})
	_, _, err := book.Transfer(ctx, ledger.TransferParams{From: alice.ID, To: world.ID, Amount: decimal.RequireFromString("10"), IdempotencyKey: "c"})
	require.NoError(t, err)

	h.start()
	today := time.Now().UTC()
	var total projections.DailyTotal
	require.Eventually(t, func() bool {
		var ok bool
		total, ok, err = projections.GetDailyTotal(ctx, h.pool, alice.ID, today)
		return err == nil && ok && total.Postings == 3
	}, 15*time.Second, 50*time.Millisecond)
	require.Equal(t, "10.0000", total.Debited.StringFixed(4))
	require.Equal(t, "100.7500", total.Credited.StringFixed(4))

	// Redeliver every log message: nothing changes.
	logStream := h.topics.Named("daybook.log")
	entries, err := h.redis.XRange(ctx, logStream, "-", "+").Result()
	require.NoError(t, err)
	for _, e := range entries {
		require.NoError(t, h.redis.XAdd(ctx, &redis.XAddArgs{Stream: logStream, Values: e.Values}).Err())
	}
	require.Eventually(t, func() bool {
		info, err := h.redis.XInfoGroups(ctx, logStream).Result()
		return err == nil && len(info) == 1 && info[0].Lag == 0 && info[0].Pending == 0
	}, 15*time.Second, 50*time.Millisecond)
	again, _, err := projections.GetDailyTotal(ctx, h.pool, alice.ID, today)
	require.NoError(t, err)
	require.Equal(t, total, again)
	checkpoint, err := projections.Checkpoint(ctx, h.pool, projections.DailyTotals)
	require.NoError(t, err)
	require.Positive(t, checkpoint)
}

// The projector applies every wanted event a log message carries, whatever
// else it carries: a batch of several types, a redelivered batch, and the
// single-event payload of messages written before batches. A message whose
// metadata names only unwanted types is passed without being decoded.
func TestProjector_AppliesEachWantedEventOfABatchOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	_, _, alice := worldAndAlice(t, h, map[string]string{"a": "100.50", "b": "0.25", "c": "3"})
	completed, err := eventstore.Read(ctx, h.pool, eventstore.ReadParams{Types: []string{logevent.TypeTransferCompleted}})
	require.NoError(t, err)
	require.Len(t, completed, 3)
	// The test publishes the log itself: the relay finds nothing.
	_, err = h.pool.Exec(ctx, `DELETE FROM outbox`)
	require.NoError(t, err)

	logged := func(r eventstore.Recorded) string {
		b, err := json.Marshal(eventstore.LogMessage{
			EventID: r.EventID.String(), StreamID: r.StreamID, Version: r.Version, Position: r.Position,
			Type: r.Type, Data: r.Data, RecordedAt: r.RecordedAt,
		})
		require.NoError(t, err)
		return string(b)
	}
	ingested := `{"event_id":"` + uuid.NewString() + `","stream_id":"ingest-x","stream_version":1,"position":1,"event_type":"ingest.event_processed","data":{},"recorded_at":"2026-12-03T10:00:00Z"}`
	batch := message.NewMessage(uuid.NewString(), []byte(`{"events":[`+ingested+`,`+logged(completed[0])+`,`+logged(completed[1])+`]}`))
	batch.Metadata.Set(eventstore.MetaEventTypes, logevent.TypeEventProcessed+","+logevent.TypeTransferCompleted)
	single := message.NewMessage(uuid.NewString(), []byte(logged(completed[2])))
	single.Metadata.Set(eventstore.MetaEventType, logevent.TypeTransferCompleted)
	unwanted := message.NewMessage(uuid.NewString(), []byte(`not even JSON`))
	unwanted.Metadata.Set(eventstore.MetaEventTypes, logevent.TypeEventProcessed)
	pub, err := redisstream.NewRedisPublisher(h.redis, nil, nil)
	require.NoError(t, err)
	logStream := h.topics.Named("daybook.log")
	require.NoError(t, pub.Publish(logStream, unwanted, batch, single, batch))

	h.start()
	today := time.Now().UTC()
	require.Eventually(t, func() bool {
		info, err := h.redis.XInfoGroups(ctx, logStream).Result()
		return err == nil && len(info) == 1 && info[0].Lag == 0 && info[0].Pending == 0
	}, 15*time.Second, 50*time.Millisecond)
	total, ok, err := projections.GetDailyTotal(ctx, h.pool, alice.ID, today)
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 3, total.Postings, "each transfer once, the redelivered batch's included")
	require.Equal(t, "103.7500", total.Credited.StringFixed(4))
	letters, _, err := h.dead.List(ctx, deadletter.ListParams{})
	require.NoError(t, err)
	require.Empty(t, letters, "the unwanted message was never decoded")
}

func TestWorker_ReconcilesOnScheduleAndExportsTheMismatches(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cfg.ReconcileInterval = 100 * time.Millisecond
	ctx := context.Background()
	book, err := ledger.NewService(h.pool, ledger.Config{})
	require.NoError(t, err)
	alice, err := book.CreateAccount(ctx, ledger.CreateAccountParams{Name: "alice"})
	require.NoError(t, err)
	_, err = h.pool.Exec(ctx, `UPDATE account_balances SET balance = balance + 1 WHERE account_id = $1`, alice.ID)
	require.NoError(t, err)

	h.start()
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(h.metrics.ReconcileMismatches) >= 1
	}, 10*time.Second, 50*time.Millisecond)
}
