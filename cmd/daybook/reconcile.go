package main

import (
	"context"
	"io"

	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/reconcile"
)

// reconcileCmd runs `daybook reconcile`: it checks the ledger, writes the
// report to out, sets daybook_reconcile_mismatches (when metrics is not nil)
// and returns how many mismatches it found. A mismatch is not an error: the
// caller turns a positive count into exit status 1.
func reconcileCmd(ctx context.Context, args []string, out io.Writer, metrics *observability.Metrics) (mismatches int, err error) {
	if len(args) > 0 {
		return 0, usageError{"reconcile takes no arguments"}
	}
	pool, err := openPool(ctx)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	report, err := reconcile.Run(ctx, pool)
	if err != nil {
		return 0, err
	}
	if metrics != nil {
		metrics.ReconcileMismatches.Set(float64(report.Count()))
	}
	if err := report.Write(out); err != nil {
		return report.Count(), err
	}
	return report.Count(), nil
}
