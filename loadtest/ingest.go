package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/daybook/daybook/client"
)

const (
	orderPoolSize       = 1000
	responseBodyMax     = 16 << 20 // bytes read from one response; a 1000-item batch answer is ~200 KB
	errorExamplesMax    = 8        // distinct error kinds kept, with one response each, for the report
	errorExampleBodyMax = 200      // bytes of a response body kept as an example
	eventType           = "order.updated"
)

// schedule is the open-loop plan: request i is due at start + i×interval, whatever happened
// to the requests before it.
type schedule struct {
	events   int64 // rate × duration
	requests int64
	batch    int
	lastSize int // the last request carries the remainder, so exactly events are scheduled
	interval time.Duration
}

func newSchedule(cfg Config) schedule {
	events := int64(math.Round(float64(cfg.Rate) * cfg.Duration.Seconds()))
	batch := int64(max(cfg.Batch, 1))
	requests := (events + batch - 1) / batch
	return schedule{
		events:   events,
		requests: requests,
		batch:    int(batch),
		lastSize: int(events - (requests-1)*batch),
		interval: time.Duration(float64(time.Second) * float64(batch) / float64(max(cfg.Rate, 1))),
	}
}

func (s schedule) size(i int64) int {
	if i == s.requests-1 {
		return s.lastSize
	}
	return s.batch
}

// outcomes counts events (not requests) by what became of them.
type outcomes struct {
	Accepted    int64 `json:"accepted"`
	Duplicate   int64 `json:"duplicate"`
	RateLimited int64 `json:"rate_limited"` // 429
	Unavailable int64 `json:"unavailable"`  // 503
	OtherStatus int64 `json:"other_status"` // any other HTTP status, for the whole request
	ItemError   int64 `json:"item_error"`   // batch item answered with an error
	BadResponse int64 `json:"bad_response"` // a 2xx batch answer without a readable result for the item
	Transport   int64 `json:"transport"`    // no HTTP answer: connect, timeout, reset
}

func (o outcomes) errors() int64 {
	return o.RateLimited + o.Unavailable + o.OtherStatus + o.ItemError + o.BadResponse + o.Transport
}

func (o outcomes) total() int64 { return o.Accepted + o.Duplicate + o.errors() }

func (o *outcomes) add(p outcomes) {
	o.Accepted += p.Accepted
	o.Duplicate += p.Duplicate
	o.RateLimited += p.RateLimited
	o.Unavailable += p.Unavailable
	o.OtherStatus += p.OtherStatus
	o.ItemError += p.ItemError
	o.BadResponse += p.BadResponse
	o.Transport += p.Transport
}

// classifyResponse turns one HTTP answer to a request of size events into event outcomes.
// A single-event answer is judged by its status code alone; a batch answer by its items, read
// tolerantly because only their shape {id, idempotency_key, status, duplicate, error?} is fixed.
func classifyResponse(code int, body []byte, size int, batch bool) outcomes {
	n := int64(size)
	switch {
	case code == http.StatusTooManyRequests:
		return outcomes{RateLimited: n}
	case code == http.StatusServiceUnavailable:
		return outcomes{Unavailable: n}
	case !batch && code == http.StatusAccepted:
		return outcomes{Accepted: 1}
	case !batch && code == http.StatusOK:
		return outcomes{Duplicate: 1}
	case !batch || code < 200 || code > 299:
		return outcomes{OtherStatus: n}
	}

	var answer struct {
		Items []batchItem `json:"items"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return outcomes{BadResponse: n}
	}
	var o outcomes
	for i := 0; i < size; i++ {
		if i >= len(answer.Items) {
			o.BadResponse += int64(size - i)
			break
		}
		o.add(answer.Items[i].outcome())
	}
	return o
}

// batchItem is one result of POST /events/ingest/batch, and the whole answer of POST /events/ingest.
type batchItem struct {
	ID        string          `json:"id"`
	Status    json.RawMessage `json:"status"` // "PENDING"…, or an HTTP code if the API numbers them
	Duplicate bool            `json:"duplicate"`
	Error     json.RawMessage `json:"error"`
}

func (it batchItem) outcome() outcomes {
	if e := strings.TrimSpace(string(it.Error)); e != "" && e != "null" && e != `""` {
		return outcomes{ItemError: 1}
	}
	if it.Duplicate {
		return outcomes{Duplicate: 1}
	}
	var s string
	if err := json.Unmarshal(it.Status, &s); err == nil {
		switch strings.ToUpper(s) {
		case "PENDING", "PROCESSING", "COMPLETED", "FAILED", "ACCEPTED":
			return outcomes{Accepted: 1} // taken into the system; FAILED can only be a re-send
		case "":
			return outcomes{BadResponse: 1}
		default:
			return outcomes{ItemError: 1}
		}
	}
	var code int
	if err := json.Unmarshal(it.Status, &code); err == nil {
		switch code {
		case http.StatusAccepted, http.StatusCreated:
			return outcomes{Accepted: 1}
		case http.StatusOK:
			return outcomes{Duplicate: 1}
		case http.StatusTooManyRequests:
			return outcomes{RateLimited: 1}
		case http.StatusServiceUnavailable:
			return outcomes{Unavailable: 1}
		default:
			return outcomes{OtherStatus: 1}
		}
	}
	return outcomes{BadResponse: 1}
}

// tally is one worker's counts, merged once all workers have stopped; no sharing, no locks.
type tally struct {
	out           outcomes
	requests      int64
	byStatus      map[int]int64
	transportErrs int64
	firstAccepted time.Time         // start of the earliest request that had an event accepted
	examples      map[string]string // error kind → one response, for the report
	sample        []string          // ids of accepted events, for the verify phase; at most sampleMax
}

func newTally() tally {
	return tally{byStatus: map[int]int64{}, examples: map[string]string{}}
}

func (t *tally) merge(o tally) {
	t.out.add(o.out)
	t.requests += o.requests
	t.transportErrs += o.transportErrs
	for code, n := range o.byStatus {
		t.byStatus[code] += n
	}
	if !o.firstAccepted.IsZero() && (t.firstAccepted.IsZero() || o.firstAccepted.Before(t.firstAccepted)) {
		t.firstAccepted = o.firstAccepted
	}
	for k, v := range o.examples {
		t.example(k, v)
	}
	t.sample = append(t.sample, o.sample[:min(len(o.sample), sampleMax-len(t.sample))]...)
}

func (t *tally) example(kind, detail string) {
	if _, ok := t.examples[kind]; !ok && len(t.examples) < errorExamplesMax {
		t.examples[kind] = detail
	}
}

// loadResult is what one open-loop run measured.
type loadResult struct {
	sched             schedule
	scheduledEvents   int64 // fewer than sched.events only if interrupted
	scheduledRequests int64
	droppedEvents     int64 // due while every worker was busy: never sent
	droppedRequests   int64
	tally             tally
	latency           LatencySummary
	start             time.Time
	window            time.Duration // first scheduled send until the last answer or the plan's end, whichever is later
	lagMax            time.Duration // worst lateness of the scheduler against the plan
	interrupted       bool
}

// loader sends one run's requests; its fields are read-only once the run starts.
//
// It sends with net/http, not the generated client (package client): client.IngestEvent would
// build each request through URL parsing and parameter binding, read every answer whole without
// a bound and decode it into the generated types, and it has no place for the tolerant reading of
// batch items below. That is work per measured request which the echo baseline does not do, so
// the figures would hold the client's cost as well as the server's. The generated client reads
// the events back after the drain instead (verify.go), where its cost is not measured.
type loader struct {
	cfg             Config
	client          *http.Client
	target          string
	orders          []string
	rec             *latencyRecorder
	samplePerWorker int // accepted event ids each worker keeps for the verify phase
}

// runLoad sends cfg's open-loop load to target (an ingest endpoint) and waits for the last answer.
func runLoad(ctx context.Context, cfg Config, client *http.Client, target string) loadResult {
	sched := newSchedule(cfg)
	l := &loader{
		cfg:    cfg,
		client: client,
		target: target,
		orders: orderPool(orderPoolSize),
		rec:    newLatencyRecorder(int(sched.requests)),
		// Rounded up, so that the workers together keep sampleMax ids when they accept that many.
		samplePerWorker: (sampleMax + cfg.Workers - 1) / cfg.Workers,
	}

	// Unbuffered: a send succeeds only if a worker is idle and waiting. Otherwise the request is
	// dropped and counted, never queued, so a slow server cannot slow the arrival rate down and
	// hide its own latency (coordinated omission).
	jobs := make(chan int)
	tallies := make([]tally, cfg.Workers)
	var ready, done sync.WaitGroup
	for w := range cfg.Workers {
		tallies[w] = newTally()
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			for size := range jobs {
				l.send(ctx, size, &tallies[w])
			}
		}()
	}
	ready.Wait() // so the first sends find workers waiting, not yet starting, and are not dropped

	res := loadResult{sched: sched, start: time.Now()}
	l.schedule(ctx, jobs, &res)
	done.Wait()
	res.window = time.Since(res.start)
	res.interrupted = ctx.Err() != nil
	if !res.interrupted {
		// The last request owns the slot up to the end of the plan: with batches of 100 at
		// 1000/s it is sent at 0.9 s, and 1000 events over 0.9 s would overstate the rate.
		res.window = max(res.window, time.Duration(sched.requests)*sched.interval)
	}

	res.tally = newTally()
	for _, t := range tallies {
		res.tally.merge(t)
	}
	res.latency = l.rec.Summary()
	return res
}

// schedule issues the plan's requests at their due times, then closes jobs. When it falls behind
// (timer slack, a descheduled process) it issues the overdue requests at once, so the count per
// second holds; lagMax records how late it ever was.
func (l *loader) schedule(ctx context.Context, jobs chan<- int, res *loadResult) {
	defer close(jobs)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := int64(0); i < res.sched.requests; i++ {
		due := res.start.Add(time.Duration(i) * res.sched.interval)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		res.lagMax = max(res.lagMax, time.Since(due))

		size := res.sched.size(i)
		res.scheduledRequests++
		res.scheduledEvents += int64(size)
		select {
		case jobs <- size:
		default:
			res.droppedRequests++
			res.droppedEvents += int64(size)
		}
	}
}

// send makes one request of size events and records what became of it. Latency runs from
// this send to the whole answer read; a request the scheduler could not hand over at its due
// time was dropped, not delayed, so no queueing hides inside these figures.
func (l *loader) send(ctx context.Context, size int, t *tally) {
	batch := l.cfg.Batch > 1
	body, err := l.body(size, batch)
	if err != nil { // cannot happen with these types; count it rather than lose it
		t.out.BadResponse += int64(size)
		t.example("encode", err.Error())
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.target, bytes.NewReader(body))
	if err != nil {
		t.out.Transport += int64(size)
		t.example("request", err.Error())
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if l.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+l.cfg.APIKey)
	}

	begin := time.Now()
	t.requests++
	resp, err := l.client.Do(req)
	var answer []byte
	if err == nil {
		// The latency includes reading the whole answer: that is when the client has it.
		answer, err = io.ReadAll(io.LimitReader(resp.Body, responseBodyMax))
		resp.Body.Close()
	}
	l.rec.Record(time.Since(begin))
	if err != nil {
		t.transportErrs++
		t.out.Transport += int64(size)
		t.example("transport", err.Error())
		return
	}

	t.byStatus[resp.StatusCode]++
	o := classifyResponse(resp.StatusCode, answer, size, batch)
	t.out.add(o)
	if o.Accepted > 0 && (t.firstAccepted.IsZero() || begin.Before(t.firstAccepted)) {
		t.firstAccepted = begin
	}
	if o.errors() > 0 {
		t.example("HTTP "+strconv.Itoa(resp.StatusCode), truncate(string(answer), errorExampleBodyMax))
	}
	// Only a worker's first few answers are decoded for ids, after the latency is recorded.
	if o.Accepted > 0 && len(t.sample) < l.samplePerWorker {
		t.sample = append(t.sample, acceptedIDs(answer, batch, l.samplePerWorker-len(t.sample))...)
	}
}

// acceptedIDs returns the ids of at most n events that an answer classified as accepting some
// says were accepted (not duplicates), in order.
func acceptedIDs(answer []byte, batch bool, n int) []string {
	if !batch {
		var it batchItem
		if n < 1 || json.Unmarshal(answer, &it) != nil || it.ID == "" {
			return nil
		}
		return []string{it.ID} // its 202 already said accepted
	}
	var a struct {
		Items []batchItem `json:"items"`
	}
	if json.Unmarshal(answer, &a) != nil {
		return nil
	}
	var ids []string
	for _, it := range a.Items {
		if len(ids) == n {
			break
		}
		if it.ID != "" && it.outcome().Accepted == 1 {
			ids = append(ids, it.ID)
		}
	}
	return ids
}

// event is the body of POST /events/ingest (DESIGN.md), and one element of a batch.
type event struct {
	EventID    string       `json:"event_id"`
	Source     string       `json:"source"`
	Type       string       `json:"type"`
	OrderID    string       `json:"order_id"`
	Payload    eventPayload `json:"payload"`
	OccurredAt string       `json:"occurred_at"`
}

type eventPayload struct {
	Status string `json:"status"`
	Amount string `json:"amount"` // money is a decimal string, never a float
}

// body builds size fresh events (new event_id each, so none is a duplicate).
func (l *loader) body(size int, batch bool) ([]byte, error) {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	orderStatuses := [...]string{"created", "paid", "shipped", "delivered"}
	newEvent := func() event {
		return event{
			EventID:    uuid.NewString(),
			Source:     l.cfg.Source,
			Type:       eventType,
			OrderID:    l.orders[rand.IntN(len(l.orders))],
			Payload:    eventPayload{Status: orderStatuses[rand.IntN(len(orderStatuses))], Amount: "12.34"},
			OccurredAt: now,
		}
	}
	if !batch {
		return json.Marshal(newEvent())
	}
	events := make([]event, size)
	for i := range events {
		events[i] = newEvent()
	}
	return json.Marshal(struct {
		Events []event `json:"events"`
	}{events})
}

// orderPool returns n order ids that are the same on every run, so repeated runs update the
// same orders instead of growing the orders projection without bound.
func orderPool(n int) []string {
	ns := uuid.MustParse("6f1c1c2e-4d1b-4b8e-9f0a-da7b00c0ffee")
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewSHA1(ns, []byte("order-"+strconv.Itoa(i))).String()
	}
	return ids
}

// newHTTPClient is tuned so the client is not the bottleneck: one kept-alive connection per
// worker, no compression, no proxy, and a dialer that refuses anything but loopback.
func newHTTPClient(cfg Config) *http.Client {
	dialer := &net.Dialer{
		Timeout:        5 * time.Second,
		KeepAlive:      30 * time.Second,
		ControlContext: loopbackOnly,
	}
	idle := cfg.Workers + 2 // the workers, plus the /metrics poller
	return &http.Client{
		Timeout: cfg.RequestTimeout,
		Transport: &http.Transport{
			Proxy:               nil, // never HTTP_PROXY: traffic stays on loopback
			DialContext:         dialer.DialContext,
			MaxIdleConns:        idle,
			MaxIdleConnsPerHost: idle,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 5 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
		// A redirect would be answered by whatever it points at; report it as a status instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// ingestTarget is the endpoint that takes requests of cfg.Batch events.
func ingestTarget(base string, batchSize int) (string, error) {
	path := "events/ingest"
	if batchSize > 1 {
		path = "events/ingest/batch"
	}
	u, err := url.JoinPath(base, path)
	if err != nil {
		return "", fmt.Errorf("join %q and %q: %w", base, path, err)
	}
	return u, nil
}

// runIngest runs the ingest mode: baseline the processed counter, send, measure the drain, then
// read a sample of the accepted events back.
func runIngest(ctx context.Context, cfg Config, progress io.Writer) (Report, error) {
	target, err := ingestTarget(cfg.URL, cfg.Batch)
	if err != nil {
		return Report{}, err
	}
	metricsURL, err := url.JoinPath(cfg.URL, "metrics")
	if err != nil {
		return Report{}, fmt.Errorf("join metrics url: %w", err)
	}
	hc := newHTTPClient(cfg)
	defer hc.CloseIdleConnections()
	// On the same loopback-only HTTP client as the load.
	api, err := client.New(cfg.URL, client.WithHTTPClient(hc), client.WithAPIKey(cfg.APIKey))
	if err != nil {
		return Report{}, err
	}

	var baseline float64
	if cfg.DrainTimeout > 0 {
		baseline, err = fetchCompleted(ctx, hc, metricsURL)
		if err != nil {
			return Report{}, fmt.Errorf("read baseline of %s from %s (is Daybook running? -drain-timeout 0 skips the drain phase): %w",
				processedMetric, metricsURL, err)
		}
	}

	res := runLoad(ctx, cfg, hc, target)

	var drain *drainResult
	var verify *verifyResult
	if cfg.DrainTimeout > 0 && !res.interrupted && res.tally.out.Accepted > 0 {
		d := measureDrain(ctx, hc, metricsURL, drainParams{
			baseline: baseline,
			accepted: res.tally.out.Accepted,
			from:     res.tally.firstAccepted,
			timeout:  cfg.DrainTimeout,
			poll:     cfg.drainPoll,
		}, progress)
		drain = &d
		if len(res.tally.sample) > 0 && ctx.Err() == nil {
			v := verifySample(ctx, api, res.tally.sample)
			verify = &v
		}
	}
	return buildReport(cfg, target, res, drain, verify), nil
}

func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
