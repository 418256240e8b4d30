package ledger_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/ledger"
)

func TestTransfer_RedisLockHeldElsewhereIsLockBusyWithinLockWait(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	client, prefix := testredis.New(t)
	const lockWait = 100 * time.Millisecond
	svc := newLedgerOn(t, pool, ledger.Config{Lock: ledger.LockRedis, Redis: client, KeyPrefix: prefix, LockWait: lockWait})
	world, alice := fundedAccount(t, svc, "10")
	ctx := t.Context()
	aliceLock := prefix + "lock:account:" + alice.ID.String()
	worldLock := prefix + "lock:account:" + world.ID.String()
	require.NoError(t, client.Set(ctx, aliceLock, "someone-else", time.Minute).Err())
	before := rowCounts(t, pool)

	start := time.Now()
	_, _, err := svc.Transfer(ctx, ledger.TransferParams{From: alice.ID, To: world.ID, Amount: mustAmount(t, "1"), IdempotencyKey: "k"})
	elapsed := time.Since(start)
	require.ErrorIs(t, err, ledger.ErrLockBusy)
	require.GreaterOrEqual(t, elapsed, lockWait, "it tries for the whole LockWait")
	require.Less(t, elapsed, 30*time.Second, "it gives up long before the foreign lock expires")

	require.Equal(t, before, rowCounts(t, pool))
	owner, err := client.Get(ctx, aliceLock).Result()
	require.NoError(t, err)
	require.Equal(t, "someone-else", owner, "a lock that is not ours is never released")
	require.Zero(t, client.Exists(ctx, worldLock).Val(), "the lock it did take is released")

	require.NoError(t, client.Del(ctx, aliceLock).Err())
	_, created, err := svc.Transfer(ctx, ledger.TransferParams{From: alice.ID, To: world.ID, Amount: mustAmount(t, "1"), IdempotencyKey: "k"})
	require.NoError(t, err)
	require.True(t, created, "a refused key is free to use again")
	require.Zero(t, client.Exists(ctx, aliceLock, worldLock).Val(), "both locks are released after the transfer")
	require.Equal(t, "9.0000", balanceOf(t, svc, alice.ID))
}

func TestTransfer_RedisLockIsHeldWhileTheTransactionRuns(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	client, prefix := testredis.New(t)
	cfg := ledger.Config{Lock: ledger.LockRedis, Redis: client, KeyPrefix: prefix, LockWait: 50 * time.Millisecond}
	svc := newLedgerOn(t, pool, cfg)
	// As another process would: it meets the first one's locks in Redis only.
	otherProcess := newLedgerOn(t, pool, cfg)
	world, alice := fundedAccount(t, svc, "10")
	ctx := t.Context()

	// Hold alice's balance row, so that the transfer stops inside its
	// transaction with both Redis locks taken.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE`, alice.ID)
	require.NoError(t, err)

	done := make(chan error, 1)
	params := ledger.TransferParams{From: alice.ID, To: world.ID, Amount: mustAmount(t, "1"), IdempotencyKey: newKey()}
	go func() {
		_, _, err := svc.Transfer(ctx, params)
		done <- err
	}()
	locks := []string{prefix + "lock:account:" + alice.ID.String(), prefix + "lock:account:" + world.ID.String()}
	require.Eventually(t, func() bool { return client.Exists(ctx, locks...).Val() == 2 }, 10*time.Second, 5*time.Millisecond)

	for _, key := range locks {
		ttl, err := client.PTTL(ctx, key).Result()
		require.NoError(t, err)
		require.Greater(t, ttl, time.Duration(0), "%s expires on its own", key)
		require.LessOrEqual(t, ttl, ledger.DefaultLockTTL)
	}
	for _, caller := range []*ledger.Service{svc, otherProcess} {
		_, _, err := caller.Transfer(ctx, ledger.TransferParams{From: world.ID, To: alice.ID, Amount: mustAmount(t, "1"), IdempotencyKey: newKey()})
		require.ErrorIs(t, err, ledger.ErrLockBusy)
	}
	require.NoError(t, tx.Rollback(ctx))
	require.NoError(t, <-done)
	require.Zero(t, client.Exists(ctx, locks...).Val())
	require.Equal(t, "9.0000", balanceOf(t, svc, alice.ID))
}
