package ledger_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/ledger"
)

// A transfer locks its two balance rows in id order. Another transaction that
// locks them in the opposite order deadlocks with it; Postgres aborts one of
// them, and when that is the transfer's, the transfer is retried and the
// client sees success.
func TestTransfer_DeadlockIsRetriedAndCounted(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	var mu sync.Mutex
	var reasons []string
	svc := newLedgerOn(t, pool, ledger.Config{RetryBase: 10 * time.Millisecond, OnRetry: func(reason string) {
		mu.Lock()
		defer mu.Unlock()
		reasons = append(reasons, reason)
	}})
	world, alice := fundedAccount(t, svc, "10")
	low, high := world.ID, alice.ID
	if bytes.Compare(low[:], high[:]) > 0 {
		low, high = high, low
	}
	ctx := t.Context()

	other, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = other.Rollback(context.Background()) }()
	// The deadlock is detected by whichever waiter's deadlock_timeout ends
	// first, and that waiter is aborted: make it the transfer's (1s, the
	// server default) rather than this one's.
	_, err = other.Exec(ctx, `SET LOCAL deadlock_timeout = '60s'`)
	require.NoError(t, err)
	var otherPID int
	require.NoError(t, other.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&otherPID))
	_, err = other.Exec(ctx, `SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE`, high)
	require.NoError(t, err)

	type result struct {
		transfer ledger.Transfer
		created  bool
		err      error
	}
	params := ledger.TransferParams{From: alice.ID, To: world.ID, Amount: mustAmount(t, "1"), IdempotencyKey: "k"}
	done := make(chan result, 1)
	go func() {
		tr, created, err := svc.Transfer(ctx, params)
		done <- result{tr, created, err}
	}()
	// The transfer holds low and waits for high.
	require.Eventually(t, func() bool {
		var waiting int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, otherPID).Scan(&waiting)
		return err == nil && waiting == 1
	}, 10*time.Second, 5*time.Millisecond)

	// Closing the circle: this waits until Postgres aborts the transfer's
	// transaction, which releases low.
	_, err = other.Exec(ctx, `SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE`, low)
	require.NoError(t, err)
	require.NoError(t, other.Rollback(ctx))

	res := <-done
	require.NoError(t, res.err)
	require.True(t, res.created)
	mu.Lock()
	require.Equal(t, []string{ledger.RetryReasonDeadlock}, reasons)
	mu.Unlock()
	require.Equal(t, "9.0000", balanceOf(t, svc, alice.ID))
	require.Equal(t, "-9.0000", balanceOf(t, svc, world.ID))
	require.Equal(t, uuid.Nil, res.transfer.ReversalOf)
}
