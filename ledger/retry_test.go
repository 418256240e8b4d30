package ledger

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// These tests drive the retry policy with injected Postgres errors: they test
// the policy, not Postgres. TestTransfer_DeadlockIsRetriedAndCounted makes a
// real deadlock.

type retryRecorder struct {
	mu      sync.Mutex
	reasons []string
}

func (r *retryRecorder) record(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, reason)
}

func failingWith(codes ...string) (attempt func() error, calls *int) {
	calls = new(int)
	return func() error {
		i := *calls
		*calls++
		if i < len(codes) {
			return &pgconn.PgError{Code: codes[i], Message: "injected"}
		}
		return nil
	}, calls
}

func TestWithRetry_RetriesDeadlockAndSerializationFailureUntilSuccess(t *testing.T) {
	t.Parallel()
	rec := &retryRecorder{}
	cfg := Config{RetryMax: 5, RetryBase: time.Millisecond, OnRetry: rec.record}
	attempt, calls := failingWith("40P01", "40001", "40P01")

	require.NoError(t, withRetry(t.Context(), cfg, attempt))
	require.Equal(t, 4, *calls)
	require.Equal(t, []string{"deadlock", "serialization", "deadlock"}, rec.reasons)
}

func TestWithRetry_GivesUpAfterRetryMaxRetries(t *testing.T) {
	t.Parallel()
	rec := &retryRecorder{}
	cfg := Config{RetryMax: 3, RetryBase: time.Millisecond, OnRetry: rec.record}
	attempt, calls := failingWith("40P01", "40P01", "40P01", "40P01", "40P01")

	err := withRetry(t.Context(), cfg, attempt)
	require.ErrorContains(t, err, "gave up after 3 retries")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "40P01", pgErr.Code)
	require.Equal(t, 4, *calls, "the first attempt and 3 retries")
	require.Equal(t, []string{"deadlock", "deadlock", "deadlock"}, rec.reasons)
}

func TestWithRetry_DoesNotRetryOtherErrors(t *testing.T) {
	t.Parallel()
	for _, failure := range []error{
		&pgconn.PgError{Code: "23505"},
		ErrInsufficientFunds,
		context.DeadlineExceeded,
	} {
		rec := &retryRecorder{}
		calls := 0
		err := withRetry(t.Context(), Config{RetryMax: 5, RetryBase: time.Millisecond, OnRetry: rec.record}, func() error {
			calls++
			return failure
		})
		require.ErrorIs(t, err, failure)
		require.Equal(t, 1, calls)
		require.Empty(t, rec.reasons)
	}
}

func TestWithRetry_StopsWaitingWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	attempt, calls := failingWith("40001", "40001")

	err := withRetry(ctx, Config{RetryMax: 5, RetryBase: time.Hour}, attempt)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "wait to retry after serialization")
	require.Equal(t, 1, *calls)
}

func TestRetryDelay_DoublesFromBaseWithJitterAndIsCapped(t *testing.T) {
	t.Parallel()
	base := 100 * time.Millisecond
	tests := []struct {
		retry    int
		min, max time.Duration
	}{
		{retry: 0, min: 50 * time.Millisecond, max: 150 * time.Millisecond},
		{retry: 1, min: 100 * time.Millisecond, max: 300 * time.Millisecond},
		{retry: 4, min: 800 * time.Millisecond, max: 2400 * time.Millisecond},
		{retry: 5, min: time.Second, max: 3 * time.Second},
		{retry: 60, min: time.Second, max: 3 * time.Second},
	}
	for _, tt := range tests {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := retryDelay(base, tt.retry)
			require.GreaterOrEqual(t, d, tt.min, "retry %d", tt.retry)
			require.LessOrEqual(t, d, tt.max, "retry %d", tt.retry)
			seen[d] = true
		}
		require.Greater(t, len(seen), 100, "retry %d: delays are jittered", tt.retry)
	}
}

func TestRetryReason_NamesOnlyRetryableErrors(t *testing.T) {
	t.Parallel()
	wrapped := errors.Join(errors.New("context"), &pgconn.PgError{Code: "40P01"})
	require.Equal(t, "deadlock", retryReason(wrapped))
	require.Equal(t, "serialization", retryReason(&pgconn.PgError{Code: "40001"}))
	require.Empty(t, retryReason(&pgconn.PgError{Code: "40003"}))
	require.Empty(t, retryReason(nil))
	require.Empty(t, retryReason(ErrLockBusy))
}
