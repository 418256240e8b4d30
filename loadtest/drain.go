package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"
)

const (
	metricsFetchTimeout = 5 * time.Second
	drainProgressEvery  = 5 * time.Second
)

// fetchCompleted reads daybook_events_processed_total{status="COMPLETED"} from /metrics, summed
// over its other labels; a series not yet exported counts as zero.
func fetchCompleted(ctx context.Context, client *http.Client, metricsURL string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, metricsFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	// Ask for the classic text format, the one sumSeries parses.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("get metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return 0, fmt.Errorf("get metrics: HTTP %d", resp.StatusCode)
	}
	v, _, err := sumSeries(resp.Body, processedMetric, processedStatusLabel, processedCompleted)
	if err != nil {
		return 0, fmt.Errorf("parse metrics: %w", err)
	}
	return v, nil
}

type drainParams struct {
	baseline float64 // counter before the first send
	accepted int64   // events the API took
	from     time.Time
	timeout  time.Duration // counted from the end of sending
	poll     time.Duration
}

// drainResult says how fast the worker took the accepted events to COMPLETED.
type drainResult struct {
	Baseline      float64
	Target        float64 // baseline + accepted
	Final         float64 // last value read
	Finished      bool    // Final reached Target before the timeout
	Elapsed       time.Duration
	RatePerS      float64 // (Final - Baseline) / Elapsed
	Missing       int64   // accepted events not yet COMPLETED when it gave up
	Timeout       time.Duration
	PollErrors    int
	LastPollError string
}

// measureDrain polls the COMPLETED counter until it reaches baseline+accepted or the timeout
// passes. Elapsed runs from the first accepted request to the poll that saw the target, so the
// rate covers processing during sending too. It assumes nothing else feeds the worker meanwhile.
func measureDrain(ctx context.Context, client *http.Client, metricsURL string, p drainParams, progress io.Writer) drainResult {
	r := drainResult{
		Baseline: p.baseline,
		Target:   p.baseline + float64(p.accepted),
		Final:    p.baseline,
		Timeout:  p.timeout,
	}
	deadline := time.Now().Add(p.timeout)
	lastProgress := time.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var end time.Time
	for {
		v, err := fetchCompleted(ctx, client, metricsURL)
		end = time.Now()
		if err != nil {
			r.PollErrors++
			r.LastPollError = err.Error()
		} else {
			r.Final = v
			if v >= r.Target {
				r.Finished = true
				break
			}
		}
		if progress != nil && end.Sub(lastProgress) >= drainProgressEvery {
			fmt.Fprintf(progress, "drain: %.0f of %d accepted events COMPLETED\n", r.Final-r.Baseline, p.accepted)
			lastProgress = end
		}
		wait := min(p.poll, time.Until(deadline))
		if wait <= 0 {
			break
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		if ctx.Err() != nil {
			break
		}
	}

	r.Elapsed = end.Sub(p.from)
	if r.Elapsed > 0 {
		r.RatePerS = (r.Final - r.Baseline) / r.Elapsed.Seconds()
	}
	if !r.Finished {
		r.Missing = int64(math.Max(0, math.Round(r.Target-r.Final)))
	}
	return r
}
