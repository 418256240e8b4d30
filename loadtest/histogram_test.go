package main

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ms1to is 1ms, 2ms, … n ms.
func ms1to(n int) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = time.Duration(i+1) * time.Millisecond
	}
	return s
}

func TestPercentile_IsTheNearestRankSample(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		samples []time.Duration // sorted
		p       float64
		want    time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single sample is every percentile", []time.Duration{7}, 50, 7},
		{"single sample p99", []time.Duration{7}, 99, 7},
		{"p50 of 1..100", ms1to(100), 50, 50 * time.Millisecond},
		{"p95 of 1..100", ms1to(100), 95, 95 * time.Millisecond},
		{"p99 of 1..100", ms1to(100), 99, 99 * time.Millisecond},
		{"p100 of 1..100 is the max", ms1to(100), 100, 100 * time.Millisecond},
		{"p50 of 1..10", ms1to(10), 50, 5 * time.Millisecond},
		{"p99 of 1..10 rounds the rank up", ms1to(10), 99, 10 * time.Millisecond},
		{"p50 of 1..3 rounds the rank up", ms1to(3), 50, 2 * time.Millisecond},
		{"p99.9 of 1..1000 is rank 999", ms1to(1000), 99.9, 999 * time.Millisecond},
		{"p99 of 1..1000 is rank 990", ms1to(1000), 99, 990 * time.Millisecond},
		{"tiny p is the min", ms1to(1000), 0.0001, 1 * time.Millisecond},
		{"one slow outlier shows at p99 of 100", append(make([]time.Duration, 99), time.Second), 99, 0},
		{"one slow outlier is the p100", append(make([]time.Duration, 99), time.Second), 100, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			require.Equal(t, tt.want, percentile(tt.samples, tt.p))
		})
	}
}

func TestSummarize_SortsAndReadsEveryFigure(t *testing.T) {
	t.Parallel()
	samples := ms1to(1000)
	// Reverse, so the summary must sort.
	for i, j := 0, len(samples)-1; i < j; i, j = i+1, j-1 {
		samples[i], samples[j] = samples[j], samples[i]
	}

	got := summarize(samples)

	require.Equal(t, LatencySummary{
		Count: 1000,
		Min:   1 * time.Millisecond,
		Mean:  500500 * time.Microsecond,
		P50:   500 * time.Millisecond,
		P95:   950 * time.Millisecond,
		P99:   990 * time.Millisecond,
		P999:  999 * time.Millisecond,
		Max:   1000 * time.Millisecond,
	}, got)
}

func TestLatencyRecorder_KeepsEverySampleFromConcurrentWriters(t *testing.T) {
	t.Parallel()
	const writers, each = 8, 250
	rec := newLatencyRecorder(writers * each)

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				rec.Record(time.Duration(w*each+i+1) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	got := rec.Summary()

	require.Equal(t, writers*each, got.Count)
	require.Equal(t, 1*time.Millisecond, got.Min)
	require.Equal(t, 1000*time.Millisecond, got.P50)
	require.Equal(t, 2000*time.Millisecond, got.Max)
}

func TestLatencyRecorder_IgnoresSamplesPastCapacity(t *testing.T) {
	t.Parallel()
	rec := newLatencyRecorder(2)

	rec.Record(3 * time.Millisecond)
	rec.Record(1 * time.Millisecond)
	rec.Record(time.Hour)

	require.Equal(t, LatencySummary{
		Count: 2, Min: time.Millisecond, Mean: 2 * time.Millisecond,
		P50: time.Millisecond, P95: 3 * time.Millisecond, P99: 3 * time.Millisecond,
		P999: 3 * time.Millisecond, Max: 3 * time.Millisecond,
	}, rec.Summary())
}

func TestLatencyRecorder_EmptyIsAllZero(t *testing.T) {
	t.Parallel()

	require.Equal(t, LatencySummary{}, newLatencyRecorder(10).Summary())
}
