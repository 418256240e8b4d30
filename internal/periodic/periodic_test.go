package periodic_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/periodic"
)

func TestPeriodic_RunsAtOnceOrAfterAnIntervalAndStopsCleanly(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	p := &periodic.Loop{Interval: time.Hour, Immediate: true, Fn: func(context.Context) { runs.Add(1) }}
	p.Stop() // before Start: nothing to stop
	p.Start(context.Background())
	require.Eventually(t, func() bool { return runs.Load() == 1 }, time.Second, 5*time.Millisecond)
	p.Stop()
	p.Stop()

	var later atomic.Int32
	q := &periodic.Loop{Interval: 20 * time.Millisecond, Fn: func(context.Context) { later.Add(1) }}
	q.Start(context.Background())
	require.Eventually(t, func() bool { return later.Load() >= 2 }, 2*time.Second, 5*time.Millisecond)
	q.Stop()
	stopped := later.Load()
	time.Sleep(60 * time.Millisecond) // three intervals: a stopped loop runs no more
	require.Equal(t, stopped, later.Load())
}
