package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"
)

// Report is one run's figures: printed as a table, or as JSON (-json) for scripts.
type Report struct {
	Mode      string  `json:"mode"`
	URL       string  `json:"url"`
	Target    string  `json:"target"`
	Rate      int     `json:"rate"` // events/s asked for
	DurationS float64 `json:"duration_s"`
	Batch     int     `json:"batch"`
	Workers   int     `json:"workers"`

	// Events: scheduled = sent + dropped, and sent = accepted + duplicate + errors.
	Events   EventCounts   `json:"events"`
	Requests RequestCounts `json:"requests"`

	SendWindowS       float64           `json:"send_window_s"`  // first scheduled send until the last answer (at least the planned duration)
	AcceptedPerS      float64           `json:"accepted_per_s"` // accepted events / send window
	ErrorRate         float64           `json:"error_rate"`     // errors / sent events
	Latency           LatencyMS         `json:"latency_ms"`     // per request, from send to whole answer read
	SchedulerLagMaxMS float64           `json:"scheduler_lag_max_ms"`
	ErrorExamples     map[string]string `json:"error_examples,omitempty"`

	Drain       *DrainReport  `json:"drain"` // null when there was no drain phase
	DrainNote   string        `json:"drain_note,omitempty"`
	Verify      *VerifyReport `json:"verify"` // null when there was no drain phase or no id to read back
	Interrupted bool          `json:"interrupted"`
	OK          bool          `json:"ok"` // the exit status is 0 exactly when this is true
}

type EventCounts struct {
	Scheduled int64    `json:"scheduled"`
	Sent      int64    `json:"sent"`
	Dropped   int64    `json:"dropped"` // due while every worker was busy: the client could not keep the rate
	Accepted  int64    `json:"accepted"`
	Duplicate int64    `json:"duplicate"`
	Errors    int64    `json:"errors"`
	ByOutcome outcomes `json:"by_outcome"`
}

type RequestCounts struct {
	Scheduled       int64            `json:"scheduled"`
	Sent            int64            `json:"sent"`
	Dropped         int64            `json:"dropped"`
	ByStatus        map[string]int64 `json:"by_status"` // HTTP status code → requests
	TransportErrors int64            `json:"transport_errors"`
}

type LatencyMS struct {
	Count int     `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

type DrainReport struct {
	Baseline      float64 `json:"baseline"`
	Target        float64 `json:"target"`
	Final         float64 `json:"final"`
	Completed     float64 `json:"completed"` // final - baseline
	ElapsedS      float64 `json:"elapsed_s"` // first accepted request until the target was seen
	RatePerS      float64 `json:"rate_per_s"`
	Finished      bool    `json:"finished"`
	Missing       int64   `json:"missing"` // accepted but not COMPLETED when the timeout passed
	TimeoutS      float64 `json:"timeout_s"`
	PollErrors    int     `json:"poll_errors"`
	LastPollError string  `json:"last_poll_error,omitempty"`
}

// VerifyReport is a sample of the run's accepted events as GET /events/{id} reads them after the drain.
type VerifyReport struct {
	Checked   int            `json:"checked"`
	Completed int            `json:"completed"`
	ByStatus  map[string]int `json:"by_status"`
	Errors    int            `json:"errors"`
	LastError string         `json:"last_error,omitempty"`
}

func buildReport(cfg Config, target string, res loadResult, drain *drainResult, verify *verifyResult) Report {
	out := res.tally.out
	sent := res.scheduledEvents - res.droppedEvents
	rep := Report{
		Mode:      cfg.Mode,
		URL:       cfg.URL,
		Target:    target,
		Rate:      cfg.Rate,
		DurationS: cfg.Duration.Seconds(),
		Batch:     cfg.Batch,
		Workers:   cfg.Workers,
		Events: EventCounts{
			Scheduled: res.scheduledEvents,
			Sent:      sent,
			Dropped:   res.droppedEvents,
			Accepted:  out.Accepted,
			Duplicate: out.Duplicate,
			Errors:    out.errors(),
			ByOutcome: out,
		},
		Requests: RequestCounts{
			Scheduled:       res.scheduledRequests,
			Sent:            res.tally.requests,
			Dropped:         res.droppedRequests,
			ByStatus:        map[string]int64{},
			TransportErrors: res.tally.transportErrs,
		},
		SendWindowS:       res.window.Seconds(),
		Latency:           latencyMS(res.latency),
		SchedulerLagMaxMS: ms(res.lagMax),
		ErrorExamples:     res.tally.examples,
		Interrupted:       res.interrupted,
	}
	for code, n := range res.tally.byStatus {
		rep.Requests.ByStatus[strconv.Itoa(code)] = n
	}
	if res.window > 0 {
		rep.AcceptedPerS = float64(out.Accepted) / res.window.Seconds()
	}
	if sent > 0 {
		rep.ErrorRate = float64(rep.Events.Errors) / float64(sent)
	}
	if len(rep.ErrorExamples) == 0 {
		rep.ErrorExamples = nil
	}

	switch {
	case drain != nil:
		rep.Drain = &DrainReport{
			Baseline:      drain.Baseline,
			Target:        drain.Target,
			Final:         drain.Final,
			Completed:     drain.Final - drain.Baseline,
			ElapsedS:      drain.Elapsed.Seconds(),
			RatePerS:      drain.RatePerS,
			Finished:      drain.Finished,
			Missing:       drain.Missing,
			TimeoutS:      drain.Timeout.Seconds(),
			PollErrors:    drain.PollErrors,
			LastPollError: drain.LastPollError,
		}
	case cfg.Mode == modeEcho:
		rep.DrainNote = "no drain phase in echo-baseline"
	case cfg.DrainTimeout == 0:
		rep.DrainNote = "skipped: -drain-timeout 0"
	case res.interrupted:
		rep.DrainNote = "skipped: interrupted"
	default:
		rep.DrainNote = "skipped: no event was accepted"
	}

	if verify != nil {
		rep.Verify = &VerifyReport{
			Checked: verify.Checked, Completed: verify.Completed, ByStatus: verify.ByStatus,
			Errors: verify.Errors, LastError: verify.LastError,
		}
	}

	rep.OK = !res.interrupted && sent > 0 && rep.Events.Errors == 0 &&
		(rep.Drain == nil || rep.Drain.Finished) &&
		(rep.Verify == nil || (rep.Verify.Errors == 0 && rep.Verify.Completed == rep.Verify.Checked))
	return rep
}

func writeJSON(w io.Writer, rep Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeTable prints the report for people. Write errors are ignored: it goes to a terminal.
func writeTable(w io.Writer, rep Report) {
	endpoint := "single"
	if rep.Batch > 1 {
		endpoint = fmt.Sprintf("batch of %d", rep.Batch)
	}
	fmt.Fprintf(w, "daybook loadtest %s → %s\n", rep.Mode, rep.Target)
	fmt.Fprintf(w, "  %d events/s for %s, %s, %d workers, open loop\n\n",
		rep.Rate, seconds(rep.DurationS), endpoint, rep.Workers)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	e, r, o := rep.Events, rep.Requests, rep.Events.ByOutcome
	row := func(name string, v any, note string) { fmt.Fprintf(tw, "  %s\t%v\t%s\n", name, v, note) }

	fmt.Fprintln(tw, "SEND\tevents\t")
	row("scheduled", e.Scheduled, fmt.Sprintf("%d requests", r.Scheduled))
	row("sent", e.Sent, fmt.Sprintf("%d requests", r.Sent))
	dropNote := fmt.Sprintf("%d requests due while all workers were busy", r.Dropped)
	if e.Dropped > 0 {
		dropNote += ": the client did not hold the rate (more -workers?)"
	}
	row("dropped", e.Dropped, dropNote)
	row("accepted", e.Accepted, fmt.Sprintf("%.1f/s over a %s send window", rep.AcceptedPerS, seconds(rep.SendWindowS)))
	row("duplicate", e.Duplicate, "")
	row("errors", e.Errors, fmt.Sprintf("%.2f%% of sent", 100*rep.ErrorRate))
	if e.Errors > 0 {
		row("  429 rate limited", o.RateLimited, "")
		row("  503 unavailable", o.Unavailable, "")
		row("  other status", o.OtherStatus, "")
		row("  item error", o.ItemError, "")
		row("  bad response", o.BadResponse, "")
		row("  transport", o.Transport, "")
	}
	row("scheduler lag max", fmt.Sprintf("%.3fms", rep.SchedulerLagMaxMS), "how late the sender ever was against its plan")

	l := rep.Latency
	fmt.Fprintln(tw, "\nLATENCY\tper request\t")
	row("count", l.Count, "")
	for _, p := range []struct {
		name string
		v    float64
	}{{"min", l.Min}, {"mean", l.Mean}, {"p50", l.P50}, {"p95", l.P95}, {"p99", l.P99}, {"p99.9", l.P999}, {"max", l.Max}} {
		row(p.name, fmt.Sprintf("%.3fms", p.v), "")
	}

	fmt.Fprintln(tw, "\nHTTP STATUS\trequests\t")
	for _, code := range slices.Sorted(maps.Keys(r.ByStatus)) {
		row(code, r.ByStatus[code], "")
	}
	row("transport errors", r.TransportErrors, "")

	fmt.Fprintln(tw, "\nDRAIN\t\t")
	if d := rep.Drain; d != nil {
		row("COMPLETED baseline", fmt.Sprintf("%.0f", d.Baseline), processedMetric+`{status="COMPLETED"}`)
		row("completed", fmt.Sprintf("%.0f", d.Completed), fmt.Sprintf("of %d accepted", e.Accepted))
		row("drain rate", fmt.Sprintf("%.1f/s", d.RatePerS), fmt.Sprintf("over %s from the first accepted request", seconds(d.ElapsedS)))
		if d.Finished {
			row("finished", "yes", "")
		} else {
			row("finished", "NO", fmt.Sprintf("%d events still not COMPLETED after the %s timeout", d.Missing, seconds(d.TimeoutS)))
		}
		if d.PollErrors > 0 {
			row("poll errors", d.PollErrors, d.LastPollError)
		}
	} else {
		row(rep.DrainNote, "", "")
	}
	if v := rep.Verify; v != nil {
		fmt.Fprintln(tw, "\nVERIFY\tevents\t")
		row("read back", v.Checked, "a sample of the accepted events, by GET /events/{id}")
		note := ""
		if v.Completed < v.Checked && rep.Drain != nil && rep.Drain.Finished {
			note = "the drain counter counted other events: is other traffic reaching this instance?"
		}
		row("COMPLETED", v.Completed, note)
		for _, status := range slices.Sorted(maps.Keys(v.ByStatus)) {
			if status != processedCompleted {
				row(status, v.ByStatus[status], "")
			}
		}
		if v.Errors > 0 {
			row("read errors", v.Errors, v.LastError)
		}
	}
	_ = tw.Flush()

	if len(rep.ErrorExamples) > 0 {
		fmt.Fprintln(w, "\nFIRST ERRORS")
		for _, k := range slices.Sorted(maps.Keys(rep.ErrorExamples)) {
			fmt.Fprintf(w, "  %s: %s\n", k, rep.ErrorExamples[k])
		}
	}
	verdict := "OK"
	switch {
	case rep.Interrupted:
		verdict = "FAIL (interrupted)"
	case !rep.OK:
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\nresult: %s\n", verdict)
}

func latencyMS(s LatencySummary) LatencyMS {
	return LatencyMS{
		Count: s.Count, Min: ms(s.Min), Mean: ms(s.Mean),
		P50: ms(s.P50), P95: ms(s.P95), P99: ms(s.P99), P999: ms(s.P999), Max: ms(s.Max),
	}
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}
