package main

import (
	"slices"
	"sync/atomic"
	"time"
)

// latencyRecorder keeps every sample in a slice preallocated for the run's request count, so
// percentiles are exact, not bucketed, and recording never allocates or locks.
// Record is safe for concurrent use; Summary must only be called once recording has stopped.
type latencyRecorder struct {
	samples []time.Duration
	next    atomic.Int64
}

func newLatencyRecorder(capacity int) *latencyRecorder {
	return &latencyRecorder{samples: make([]time.Duration, capacity)}
}

// Record stores d. Samples past capacity are not kept; capacity is the number of requests the
// schedule can issue, so that would be a bug, and Summary's count would show it.
func (r *latencyRecorder) Record(d time.Duration) {
	i := r.next.Add(1) - 1
	if i < int64(len(r.samples)) {
		r.samples[i] = d
	}
}

// LatencySummary is the distribution of one run's request latencies.
type LatencySummary struct {
	Count int
	Min   time.Duration
	Mean  time.Duration
	P50   time.Duration
	P95   time.Duration
	P99   time.Duration
	P999  time.Duration
	Max   time.Duration
}

// Summary sorts the samples in place and reads the percentiles off them.
func (r *latencyRecorder) Summary() LatencySummary {
	n := min(int(r.next.Load()), len(r.samples))
	return summarize(r.samples[:n])
}

// summarize sorts samples in place.
func summarize(samples []time.Duration) LatencySummary {
	if len(samples) == 0 {
		return LatencySummary{}
	}
	slices.Sort(samples)
	var total time.Duration
	for _, s := range samples {
		total += s
	}
	return LatencySummary{
		Count: len(samples),
		Min:   samples[0],
		Mean:  total / time.Duration(len(samples)),
		P50:   percentile(samples, 50),
		P95:   percentile(samples, 95),
		P99:   percentile(samples, 99),
		P999:  percentile(samples, 99.9),
		Max:   samples[len(samples)-1],
	}
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of sorted: the smallest
// sample such that at least p% of all samples are at or below it. It is always a real sample,
// never an interpolation, so "p99 = 4ms" means a request really took 4ms.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// rank = ceil(p/100 × n), computed in integers (per-million) to dodge float rounding:
	// 99.9% of 1000 must be rank 999, not 1000.
	perMillion := int64(p*10_000 + 0.5)
	rank := int((perMillion*int64(n) + 999_999) / 1_000_000)
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}
