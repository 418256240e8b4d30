package handlers

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/daybook/daybook/internal/periodic"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/reconcile"
)

// reconciler runs the ledger reconciliation on schedule and publishes the
// mismatch count. The first run is after one interval, not at start: a
// restart loop must not become a reconcile loop.
type reconciler struct {
	periodic.Loop
	pool    *pgxpool.Pool
	metrics *observability.Metrics
	logger  *slog.Logger
}

func newReconciler(pool *pgxpool.Pool, interval time.Duration, metrics *observability.Metrics, logger *slog.Logger) *reconciler {
	r := &reconciler{pool: pool, metrics: metrics, logger: logger}
	r.Loop = periodic.Loop{Interval: interval, Fn: func(ctx context.Context) { _, _ = r.runOnce(ctx) }}
	return r
}

func (r *reconciler) runOnce(ctx context.Context) (reconcile.Report, error) {
	report, err := reconcile.Run(ctx, r.pool)
	if err != nil {
		if ctx.Err() == nil {
			r.logger.Error("scheduled reconcile", "error", err)
		}
		return report, err
	}
	r.metrics.ReconcileMismatches.Set(float64(report.Count()))
	if report.Count() > 0 {
		r.logger.Error("scheduled reconcile found mismatches", "mismatches", report.Count(), "accounts", report.Accounts, "transfers", report.Transfers)
	} else {
		r.logger.Info("scheduled reconcile clean", "accounts", report.Accounts, "transfers", report.Transfers)
	}
	return report, nil
}
