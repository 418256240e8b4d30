package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// outcome is what the client finally learned about one request.
type outcome int

// The zero outcome means no answer yet.
const (
	// outcomeOK: accepted (ingest 202, or 200 naming the original) or moved (transfer 201/200).
	outcomeOK outcome = iota + 1
	// outcomeRefused: a definite no (4xx): nothing was done, by the contract.
	outcomeRefused
	// outcomeUnavailable: the last answer was 5xx (503: nothing was accepted); retries ran out.
	outcomeUnavailable
	// outcomeUnknown: the last attempt failed at the connection level; retries ran out.
	outcomeUnknown
)

// Named limits of the load generator.
const (
	// Each client waits for its answer (and retries) before its next send, so
	// the clients must outnumber rate × latency: 1,000 events/s at 50 ms needs 50.
	eventClients    = 64
	transferClients = 32
	// accountsFunded spreads the transfers: each locks two of them, and five
	// made every transfer wait for another (80 transfers/s at most here).
	accountsFunded = 50
	fundingAmount  = "1000000.0000"
	// requestTimeout bounds one HTTP attempt.
	requestTimeout = 10 * time.Second
	retryDelayMin  = 100 * time.Millisecond
	retryDelayMax  = 2 * time.Second
	// poisonEvery: one event in this many breaks the order_updates rule (no
	// order_id): the worker must fail it for good and dead-letter it.
	poisonEvery = 50
	// duplicateEvery: one send in this many repeats an accepted event's key and body.
	duplicateEvery = 25
	// orderIDs spreads the order_updates events over this many orders.
	orderIDs = 97
)

// eventRecord is what the client saw of one event key.
type eventRecord struct {
	key      string
	n        int64
	poison   bool
	outcome  outcome
	ids      map[string]bool // every id the API named for this key (202 or 200)
	admitted int             // 202 answers: "new, and on the queue"
	attempts int
	status   int // the last HTTP status, 0 for a connection failure
}

// transferRecord is what the client saw of one transfer key.
type transferRecord struct {
	key      string
	from, to int // account indexes; 0 is the world account
	amount   string
	outcome  outcome
	ids      map[string]bool
	attempts int
	status   int
}

// loadSettings shape one scenario's load.
type loadSettings struct {
	eventsPerSecond    float64
	transfersPerSecond float64
	// retryFor bounds how long one request is retried with the same key.
	retryFor time.Duration
}

// generator sends ingest events and ledger transfers to the APIs in turn
// (each request to the next one), retrying each on a 5xx or a connection
// failure with the same idempotency key and body, as a real client behind a
// load balancer would, and records what it learned.
type generator struct {
	bases    []string
	turn     atomic.Uint64
	scenario string
	http     *http.Client
	cfg      loadSettings
	rng      *rand.Rand
	rngMu    sync.Mutex

	accounts []string // ids; [0] is the world account

	mu        sync.Mutex
	events    []*eventRecord
	accepted  []*eventRecord // candidates for deliberate duplicates
	transfers []*transferRecord

	nextEvent, nextTransfer atomic.Int64
	dupSent, dupAnswered200 atomic.Int64
	retries503, retriesConn atomic.Int64

	wg sync.WaitGroup
}

func newGenerator(bases []string, scenario string, cfg loadSettings, seed uint64) *generator {
	return &generator{
		bases: bases, scenario: scenario, cfg: cfg,
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), //nolint:gosec // G404: repeatable load choices, no secret
		http: &http.Client{
			Timeout:   requestTimeout,
			Transport: &http.Transport{MaxIdleConnsPerHost: eventClients + transferClients, IdleConnTimeout: 30 * time.Second},
		},
	}
}

func (g *generator) intn(n int) int {
	g.rngMu.Lock()
	defer g.rngMu.Unlock()
	return g.rng.IntN(n)
}

// setup opens the world account and accountsFunded accounts, and funds each
// from the world account (recorded as transfers like any other).
func (g *generator) setup(ctx context.Context) error {
	g.accounts = make([]string, accountsFunded+1)
	for i := range g.accounts {
		body := map[string]any{"name": fmt.Sprintf("%s-%d", g.scenario, i), "allow_negative": i == 0}
		var out struct {
			ID string `json:"id"`
		}
		status, raw, err := g.post(ctx, "/accounts", body, nil)
		if err != nil {
			return fmt.Errorf("open account %d: %w", i, err)
		}
		if status != http.StatusCreated || json.Unmarshal(raw, &out) != nil || out.ID == "" {
			return fmt.Errorf("open account %d: status %d: %s", i, status, raw)
		}
		g.accounts[i] = out.ID
	}
	for i := 1; i <= accountsFunded; i++ {
		rec := &transferRecord{key: fmt.Sprintf("%s-fund-%d", g.scenario, i), from: 0, to: i, amount: fundingAmount, ids: map[string]bool{}}
		g.mu.Lock()
		g.transfers = append(g.transfers, rec)
		g.mu.Unlock()
		g.transfer(ctx, rec)
		if rec.outcome != outcomeOK {
			return fmt.Errorf("fund account %d: last status %d", i, rec.status)
		}
	}
	return nil
}

// start runs the clients until load ends; requests in flight when it ends
// finish their retries under ctx (bounded by retryFor). wait waits for them.
func (g *generator) start(load, ctx context.Context) {
	for i := range eventClients {
		g.wg.Go(func() { g.pace(load, g.cfg.eventsPerSecond/eventClients, i, func() { g.sendEvent(ctx) }) })
	}
	for i := range transferClients {
		g.wg.Go(func() { g.pace(load, g.cfg.transfersPerSecond/transferClients, i, func() { g.sendTransfer(ctx) }) })
	}
}

func (g *generator) wait() { g.wg.Wait() }

// pace calls send at rate per second until load ends. A client blocked in
// retries sends nothing meanwhile, as a real one would: ticks are dropped.
func (g *generator) pace(load context.Context, rate float64, offset int, send func()) {
	if rate <= 0 {
		return
	}
	interval := time.Duration(float64(time.Second) / rate)
	// Spread the clients over one interval so that they do not fire together.
	select {
	case <-load.Done():
		return
	case <-time.After(interval * time.Duration(offset) / eventClients):
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		send()
		select {
		case <-load.Done():
			return
		case <-tick.C:
		}
	}
}

func (g *generator) eventBody(n int64, poison bool) map[string]any {
	statuses := []string{"created", "paid", "packed", "shipped", "delivered"}
	body := map[string]any{
		"event_id": fmt.Sprintf("%s-e%d", g.scenario, n),
		"source":   "order_updates",
		"type":     "order.updated",
		"payload":  map[string]any{"status": statuses[n%int64(len(statuses))], "n": n},
	}
	if !poison {
		body["order_id"] = fmt.Sprintf("o-%d", n%orderIDs)
	}
	return body
}

func (g *generator) sendEvent(ctx context.Context) {
	g.mu.Lock()
	var again *eventRecord
	if len(g.accepted) > 0 && g.intn(duplicateEvery) == 0 {
		again = g.accepted[g.intn(len(g.accepted))]
	}
	g.mu.Unlock()
	if again != nil {
		// A deliberate duplicate: the same key and body again. The answer
		// must be 200 naming the original; a 202 would admit the key twice.
		g.dupSent.Add(1)
		g.ingest(ctx, again, true)
		return
	}
	n := g.nextEvent.Add(1)
	rec := &eventRecord{key: fmt.Sprintf("%s-e%d", g.scenario, n), n: n, poison: n%poisonEvery == 0, ids: map[string]bool{}}
	g.mu.Lock()
	g.events = append(g.events, rec)
	g.mu.Unlock()
	g.ingest(ctx, rec, false)
}

// ingest sends one event until the answer is final or retryFor has passed.
func (g *generator) ingest(ctx context.Context, rec *eventRecord, duplicate bool) {
	body := g.eventBody(rec.n, rec.poison)
	deadline := time.Now().Add(g.cfg.retryFor)
	delay := retryDelayMin
	for {
		status, raw, err := g.post(ctx, "/events/ingest", body, nil)
		var ans struct {
			ID        string `json:"id"`
			Duplicate bool   `json:"duplicate"`
		}
		final := err == nil && status < 500 && status != http.StatusTooManyRequests
		g.mu.Lock()
		rec.attempts++
		rec.status = status
		switch {
		case err != nil:
			if !duplicate && rec.outcome != outcomeOK {
				rec.outcome = outcomeUnknown
			}
		case (status == http.StatusAccepted || status == http.StatusOK) && json.Unmarshal(raw, &ans) == nil && ans.ID != "":
			rec.ids[ans.ID] = true
			if status == http.StatusAccepted {
				rec.admitted++
			}
			if duplicate && status == http.StatusOK && ans.Duplicate {
				g.dupAnswered200.Add(1)
			}
			if rec.outcome != outcomeOK {
				rec.outcome = outcomeOK
				g.accepted = append(g.accepted, rec)
			}
		case final:
			if !duplicate && rec.outcome != outcomeOK {
				rec.outcome = outcomeRefused
			}
		default:
			if !duplicate && rec.outcome != outcomeOK {
				rec.outcome = outcomeUnavailable
			}
		}
		g.mu.Unlock()
		if final || !g.retry(ctx, err, deadline, &delay) {
			return
		}
	}
}

func (g *generator) sendTransfer(ctx context.Context) {
	n := g.nextTransfer.Add(1)
	from := 1 + g.intn(accountsFunded)
	to := 1 + g.intn(accountsFunded-1)
	if to >= from {
		to++
	}
	cents := 1 + g.intn(5000)
	rec := &transferRecord{
		key: fmt.Sprintf("%s-t%d", g.scenario, n), from: from, to: to,
		amount: fmt.Sprintf("%d.%02d", cents/100, cents%100), ids: map[string]bool{},
	}
	g.mu.Lock()
	g.transfers = append(g.transfers, rec)
	g.mu.Unlock()
	g.transfer(ctx, rec)
}

// transfer sends one transfer until the answer is final or retryFor has
// passed. Retried: 5xx, 429 and 409 with Retry-After (an account lock is
// busy); final: 201 and 200 (moved), any other 4xx (nothing written).
func (g *generator) transfer(ctx context.Context, rec *transferRecord) {
	body := map[string]any{
		"from_account_id": g.accounts[rec.from], "to_account_id": g.accounts[rec.to],
		"amount": rec.amount, "idempotency_key": rec.key, "metadata": map[string]any{"scenario": g.scenario},
	}
	deadline := time.Now().Add(g.cfg.retryFor)
	delay := retryDelayMin
	for {
		var retryAfter bool
		status, raw, err := g.post(ctx, "/transfers", body, &retryAfter)
		var ans struct {
			ID     string `json:"id"`
			Amount string `json:"amount"`
		}
		busy := status == http.StatusConflict && retryAfter
		final := err == nil && status < 500 && status != http.StatusTooManyRequests && !busy
		g.mu.Lock()
		rec.attempts++
		rec.status = status
		switch {
		case err != nil:
			rec.outcome = outcomeUnknown
		case (status == http.StatusCreated || status == http.StatusOK) && json.Unmarshal(raw, &ans) == nil && ans.ID != "":
			rec.ids[ans.ID] = true
			rec.outcome = outcomeOK
		case final:
			rec.outcome = outcomeRefused
		default:
			rec.outcome = outcomeUnavailable
		}
		g.mu.Unlock()
		if final || !g.retry(ctx, err, deadline, &delay) {
			return
		}
	}
}

// retry sleeps before the next attempt (doubling, jittered) and reports
// whether there is one.
func (g *generator) retry(ctx context.Context, err error, deadline time.Time, delay *time.Duration) bool {
	if err != nil {
		g.retriesConn.Add(1)
	} else {
		g.retries503.Add(1)
	}
	if time.Now().After(deadline) {
		return false
	}
	sleep := *delay/2 + time.Duration(g.intn(int(*delay/2)+1))
	*delay = min(*delay*2, retryDelayMax)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(sleep):
		return ctx.Err() == nil
	}
}

// post sends body as JSON. A nil error means an HTTP answer was read whole;
// anything else is a connection-level failure.
func (g *generator) post(ctx context.Context, path string, body any, retryAfter *bool) (int, []byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	base := g.bases[g.turn.Add(1)%uint64(len(g.bases))]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(raw))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, errors.Join(errors.New("read answer"), err)
	}
	if retryAfter != nil {
		*retryAfter = resp.Header.Get("Retry-After") != ""
	}
	return resp.StatusCode, out, nil
}

// snapshot returns the records; call it only after wait.
func (g *generator) snapshot() ([]*eventRecord, []*transferRecord) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.events, g.transfers
}
