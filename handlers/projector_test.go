package handlers

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/projections"
)

// Transfers reach the daily totals through the outbox relay, daybook.log and
// the projector; a redelivered log message is applied once.
func TestProjector_FoldsLedgerPostingsIntoDailyTotalsOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	book, err := ledger.NewService(h.pool, ledger.Config{})
	require.NoError(t, err)
	world, err := book.CreateAccount(ctx, ledger.CreateAccountParams{Name: "world", AllowNegative: true})
	require.NoError(t, err)
	alice, err := book.CreateAccount(ctx, ledger.CreateAccountParams{Name: "alice"})
	require.NoError(t, err)
	for key, amount := range map[string]string{"a": "100.50", "b": "0.25"} {
		_, _, err := book.Transfer(ctx, ledger.TransferParams{From: world.ID, To: alice.ID, Amount: decimal.RequireFromString(amount), IdempotencyKey: key})
		require.NoError(t, err)
	}
	_, _, err = book.Transfer(ctx, ledger.TransferParams{From: alice.ID, To: world.ID, Amount: decimal.RequireFromString("10"), IdempotencyKey: "c"})
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
