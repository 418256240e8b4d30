package handlers

import (
	"context"
	"log/slog"
	"time"

	"github.com/daybook/daybook/internal/periodic"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/replay"
)

// rescuer re-enqueues events that sat in PROCESSING or PENDING for longer
// than stuckAfter: a worker died mid-attempt, or a re-enqueue was lost. The
// cutoff comes from the injected clock and is compared with updated_at,
// which Postgres stamps: the two clocks must agree (NTP) to well within
// stuckAfter. A rescue of an attempt still running costs an attempt, never a
// second effect: every move is a compare-and-set on status and attempts.
type rescuer struct {
	periodic.Loop
	replayer   *replay.Replayer
	stuckAfter time.Duration
	now        func() time.Time
	metrics    *observability.Metrics
	logger     *slog.Logger
}

func newRescuer(replayer *replay.Replayer, stuckAfter, interval time.Duration, now func() time.Time, metrics *observability.Metrics, logger *slog.Logger) *rescuer {
	r := &rescuer{replayer: replayer, stuckAfter: stuckAfter, now: now, metrics: metrics, logger: logger}
	r.Loop = periodic.Loop{Interval: interval, Immediate: true, Fn: func(ctx context.Context) { _, _ = r.runOnce(ctx) }}
	return r
}

// runOnce rescues what is stuck by the injected clock, logs and counts it.
func (r *rescuer) runOnce(ctx context.Context) (int, error) {
	n, err := r.replayer.Rescue(ctx, r.now().Add(-r.stuckAfter))
	if n > 0 {
		r.metrics.StuckRescued.Add(float64(n))
		r.logger.Warn("re-enqueued stuck events", "count", n)
	}
	if err != nil && ctx.Err() == nil {
		r.logger.Error("rescue stuck events", "error", err)
	}
	return n, err
}
