package ledger

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Reasons passed to Config.OnRetry.
const (
	RetryReasonDeadlock      = "deadlock"
	RetryReasonSerialization = "serialization"
)

const (
	sqlStateDeadlock      = "40P01"
	sqlStateSerialization = "40001"

	// retryDelayMax caps one retry's delay, whatever RetryBase and RetryMax.
	retryDelayMax = 2 * time.Second
)

// retryReason says why err deserves another attempt of the whole
// transaction, or "" when it does not.
func retryReason(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return ""
	}
	switch pgErr.Code {
	case sqlStateDeadlock:
		return RetryReasonDeadlock
	case sqlStateSerialization:
		return RetryReasonSerialization
	}
	return ""
}

// withRetry runs attempt, and again after a deadlock or serialization
// failure, at most cfg.RetryMax more times. Each attempt must be a whole
// transaction: Postgres has rolled the failed one back.
func withRetry(ctx context.Context, cfg Config, attempt func() error) error {
	for retry := 0; ; retry++ {
		err := attempt()
		reason := retryReason(err)
		if reason == "" {
			return err
		}
		if retry >= cfg.RetryMax {
			return fmt.Errorf("gave up after %d retries: %w", retry, err)
		}
		if cfg.OnRetry != nil {
			cfg.OnRetry(reason)
		}
		if err := sleep(ctx, retryDelay(cfg.RetryBase, retry)); err != nil {
			return fmt.Errorf("wait to retry after %s: %w", reason, err)
		}
	}
}

// retryDelay is base doubled per earlier retry, capped, and jittered to
// [0.5, 1.5) of itself so that transactions that failed together do not
// retry together.
func retryDelay(base time.Duration, retry int) time.Duration {
	d := base
	for range retry {
		if d >= retryDelayMax {
			break
		}
		d *= 2
	}
	d = min(d, retryDelayMax)
	return d/2 + rand.N(d+1) //nolint:gosec // G404: jitter needs no secrecy
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
