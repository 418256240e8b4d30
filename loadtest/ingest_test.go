package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/client"
)

func TestNewSchedule_PlansExactlyRateTimesDuration(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name                     string
		rate                     int
		duration                 time.Duration
		batch                    int
		wantEvents, wantRequests int64
		wantLastSize             int
		wantInterval             time.Duration
	}{
		{"single", 2000, 10 * time.Second, 1, 20000, 20000, 1, 500 * time.Microsecond},
		{"batch divides evenly", 2000, 10 * time.Second, 100, 20000, 200, 100, 50 * time.Millisecond},
		{"batch leaves a remainder", 200, time.Second, 30, 200, 7, 20, 150 * time.Millisecond},
		{"batch larger than the run", 10, time.Second, 1000, 10, 1, 10, 100 * time.Second},
		{"fractional duration", 3, 1500 * time.Millisecond, 1, 5, 5, 1, 333333333},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			s := newSchedule(Config{Rate: tt.rate, Duration: tt.duration, Batch: tt.batch})

			require.Equal(t, tt.wantEvents, s.events)
			require.Equal(t, tt.wantRequests, s.requests)
			require.Equal(t, tt.wantLastSize, s.lastSize)
			require.Equal(t, tt.wantInterval, s.interval)
			var sum int64
			for i := range s.requests {
				sum += int64(s.size(i))
			}
			require.Equal(t, s.events, sum)
		})
	}
}

func TestClassifyResponse_CountsEventsByOutcome(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name  string
		code  int
		body  string
		size  int
		batch bool
		want  outcomes
	}{
		{"single accepted", 202, `{"status":"PENDING"}`, 1, false, outcomes{Accepted: 1}},
		{"single duplicate", 200, `{"duplicate":true}`, 1, false, outcomes{Duplicate: 1}},
		{"single rate limited", 429, ``, 1, false, outcomes{RateLimited: 1}},
		{"single unavailable", 503, ``, 1, false, outcomes{Unavailable: 1}},
		{"single schema violation", 422, `{"title":"Unprocessable Entity"}`, 1, false, outcomes{OtherStatus: 1}},
		{"single 201 is not the contract", 201, ``, 1, false, outcomes{OtherStatus: 1}},
		{"batch rate limited as a whole", 429, ``, 50, true, outcomes{RateLimited: 50}},
		{"batch unavailable as a whole", 503, ``, 50, true, outcomes{Unavailable: 50}},
		{"batch refused as a whole", 400, `{}`, 3, true, outcomes{OtherStatus: 3}},
		{
			"batch items by status string", 202,
			`{"items":[{"id":"a","status":"PENDING","duplicate":false},{"status":"COMPLETED"},{"status":"processing"},{"id":"d","status":"COMPLETED","duplicate":true}]}`,
			4, true, outcomes{Accepted: 3, Duplicate: 1},
		},
		{
			"batch items with errors", 200,
			`{"items":[{"status":"PENDING","error":null},{"error":"payload: required"},{"status":"PENDING","error":""},{"error":{"detail":"bad"}},{"status":"REJECTED"}]}`,
			5, true, outcomes{Accepted: 2, ItemError: 3},
		},
		{
			"batch items by numeric status", 207,
			`{"items":[{"status":202},{"status":200},{"status":429},{"status":503},{"status":422}]}`,
			5, true, outcomes{Accepted: 1, Duplicate: 1, RateLimited: 1, Unavailable: 1, OtherStatus: 1},
		},
		{"batch item without status", 202, `{"items":[{"id":"x"},{"status":""}]}`, 2, true, outcomes{BadResponse: 2}},
		{"batch answer with too few items", 202, `{"items":[{"status":"PENDING"}]}`, 3, true, outcomes{Accepted: 1, BadResponse: 2}},
		{"batch answer with extra items", 202, `{"items":[{"status":"PENDING"},{"status":"PENDING"}]}`, 1, true, outcomes{Accepted: 1}},
		{"batch answer not JSON", 202, `accepted`, 4, true, outcomes{BadResponse: 4}},
		{"batch answer without items", 202, `{"status":"PENDING"}`, 4, true, outcomes{BadResponse: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got := classifyResponse(tt.code, []byte(tt.body), tt.size, tt.batch)

			require.Equal(t, tt.want, got)
			require.Equal(t, int64(tt.size), got.total())
		})
	}
}

func TestLoaderBody_IsTheIngestContract(t *testing.T) {
	t.Parallel()
	l := &loader{cfg: Config{Source: "order_updates"}, orders: orderPool(orderPoolSize)}

	single, err := l.body(1, false)
	require.NoError(t, err)
	batch, err := l.body(3, true)
	require.NoError(t, err)

	var one wireEvent
	require.NoError(t, json.Unmarshal(single, &one))
	require.NoError(t, one.check())
	var many struct {
		Events []wireEvent `json:"events"`
	}
	require.NoError(t, json.Unmarshal(batch, &many))
	require.Len(t, many.Events, 3)
	ids := map[string]bool{one.EventID: true}
	for _, e := range many.Events {
		require.NoError(t, e.check())
		ids[e.EventID] = true
	}
	require.Len(t, ids, 4, "every event has a fresh event_id")
}

func TestOrderPool_IsStableAcrossRuns(t *testing.T) {
	t.Parallel()

	a, b := orderPool(orderPoolSize), orderPool(orderPoolSize)

	require.Equal(t, a, b)
	require.Len(t, a, orderPoolSize)
	slices.Sort(a)
	require.Len(t, slices.Compact(a), orderPoolSize)
}

// wireEvent is an ingested event as the fake server reads it.
type wireEvent struct {
	EventID    string `json:"event_id"`
	Source     string `json:"source"`
	Type       string `json:"type"`
	OrderID    string `json:"order_id"`
	OccurredAt string `json:"occurred_at"`
	Payload    struct {
		Status string `json:"status"`
		Amount string `json:"amount"`
	} `json:"payload"`
}

func (e wireEvent) check() error {
	if _, err := uuid.Parse(e.EventID); err != nil {
		return fmt.Errorf("event_id: %w", err)
	}
	if _, err := uuid.Parse(e.OrderID); err != nil {
		return fmt.Errorf("order_id: %w", err)
	}
	if _, err := time.Parse(time.RFC3339Nano, e.OccurredAt); err != nil {
		return fmt.Errorf("occurred_at: %w", err)
	}
	if e.Source != "order_updates" || e.Type != "order.updated" || e.Payload.Amount != "12.34" ||
		!slices.Contains([]string{"created", "paid", "shipped", "delivered"}, e.Payload.Status) {
		return fmt.Errorf("unexpected event %+v", e)
	}
	return nil
}

// fakeDaybook speaks the ingest contract, answers GET /events/{id} and exports the processed counter.
type fakeDaybook struct {
	baseline    int64 // COMPLETED before the run, from earlier traffic
	process     bool  // each accepted event is COMPLETED at once; false: the worker is stuck
	counterOnly bool  // the counter moves as if each accepted event were COMPLETED, but none is: other traffic
	rejectEvery int64 // every n-th request is answered 429; 0 never
	apiKey      string
	noMetrics   bool

	requests  atomic.Int64
	received  atomic.Int64
	badEvents atomic.Int64
	completed atomic.Int64
	eventGets atomic.Int64
	ids       sync.Map // event id → struct{}, every event accepted
}

func (f *fakeDaybook) start(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	accept := func(w http.ResponseWriter, r *http.Request, batch bool) {
		n := f.requests.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if f.apiKey != "" && r.Header.Get("Authorization") != "Bearer "+f.apiKey {
			http.Error(w, "bad key", http.StatusUnauthorized)
			return
		}
		if f.rejectEvery > 0 && n%f.rejectEvery == 0 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"title":"Too Many Requests"}`, http.StatusTooManyRequests)
			return
		}
		var events []wireEvent
		if batch {
			var in struct {
				Events []wireEvent `json:"events"`
			}
			err = json.Unmarshal(body, &in)
			events = in.Events
		} else {
			var e wireEvent
			err = json.Unmarshal(body, &e)
			events = []wireEvent{e}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var items bytes.Buffer
		for i, e := range events {
			if e.check() != nil {
				f.badEvents.Add(1)
			}
			if i > 0 {
				items.WriteByte(',')
			}
			id := uuid.NewString()
			f.ids.Store(id, struct{}{})
			fmt.Fprintf(&items, `{"id":%q,"idempotency_key":%q,"status":"PENDING","duplicate":false}`, id, e.EventID)
		}
		f.received.Add(int64(len(events)))
		if f.process || f.counterOnly {
			f.completed.Add(int64(len(events)))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		if batch {
			fmt.Fprintf(w, `{"items":[%s]}`, items.String())
		} else {
			_, _ = w.Write(items.Bytes())
		}
	}
	mux.HandleFunc("POST /events/ingest", func(w http.ResponseWriter, r *http.Request) { accept(w, r, false) })
	mux.HandleFunc("POST /events/ingest/batch", func(w http.ResponseWriter, r *http.Request) { accept(w, r, true) })
	mux.HandleFunc("GET /events/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.eventGets.Add(1)
		id := r.PathValue("id")
		if _, ok := f.ids.Load(id); !ok {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"title":"Not Found","status":404,"detail":"no event with id %s"}`, id)
			return
		}
		status := "PENDING"
		if f.process {
			status = "COMPLETED"
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"idempotency_key":"k","source":"order_updates","type":"order.updated","status":%q,`+
			`"attempts":1,"replays":0,"last_error":null,"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`, id, status)
	})
	if !f.noMetrics {
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			fmt.Fprintf(w, `# HELP daybook_events_processed_total Events processed.
# TYPE daybook_events_processed_total counter
daybook_events_processed_total{status="COMPLETED"} %d
daybook_events_processed_total{status="FAILED"} 7
`, f.baseline+f.completed.Load())
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// runJSON runs the command with -json and decodes its one JSON object.
func runJSON(t *testing.T, args ...string) (int, Report, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append(args, "-json"), &stdout, &stderr)
	var rep Report
	if stdout.Len() > 0 {
		dec := json.NewDecoder(&stdout)
		require.NoError(t, dec.Decode(&rep), "stdout: %s", stdout.String())
		require.False(t, dec.More(), "stdout holds exactly one JSON object")
	}
	return code, rep, stderr.String()
}

// smallLoad is 200 events in 1s.
func smallLoad(url string, extra ...string) []string {
	return append([]string{"ingest", "-url", url, "-rate", "200", "-duration", "1s", "-workers", "8"}, extra...)
}

func requireAccountedFor(t *testing.T, rep Report) {
	t.Helper()
	e := rep.Events
	require.Equal(t, int64(200), e.Scheduled)
	require.Equal(t, e.Scheduled, e.Accepted+e.Duplicate+e.Errors+e.Dropped, "events: %+v", e)
	require.Equal(t, e.Sent, e.Accepted+e.Duplicate+e.Errors)
	require.Equal(t, rep.Requests.Scheduled, rep.Requests.Sent+rep.Requests.Dropped)
}

func TestRunIngest_DrainFinishesWhenEveryAcceptedEventIsCompleted(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name         string
		batch        string
		wantEndpoint string
	}{
		{"single events", "1", "/events/ingest"},
		{"batches of 25", "25", "/events/ingest/batch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeDaybook{baseline: 500, process: true, apiKey: "k-123"}
			srv := fake.start(t)

			code, rep, stderr := runJSON(t, smallLoad(srv.URL, "-batch", tt.batch, "-api-key", "k-123", "-drain-timeout", "10s")...)

			require.Equal(t, exitOK, code, stderr)
			requireAccountedFor(t, rep)
			require.Equal(t, srv.URL+tt.wantEndpoint, rep.Target)
			require.Zero(t, rep.Events.Errors, "examples: %v", rep.ErrorExamples)
			require.Positive(t, rep.Events.Accepted)
			require.Equal(t, rep.Events.Sent, fake.received.Load())
			require.Zero(t, fake.badEvents.Load())
			require.Equal(t, rep.Requests.Sent, rep.Requests.ByStatus["202"])
			require.NotNil(t, rep.Drain)
			require.True(t, rep.Drain.Finished)
			require.Equal(t, 500.0, rep.Drain.Baseline)
			require.Equal(t, float64(rep.Events.Accepted), rep.Drain.Completed)
			require.Zero(t, rep.Drain.Missing)
			require.Positive(t, rep.Drain.RatePerS)
			requireVerified(t, rep, fake, "COMPLETED")
			require.Equal(t, rep.Verify.Checked, rep.Verify.Completed)
			require.True(t, rep.OK)
			require.Contains(t, stderr, "result: OK", "the table goes to stderr under -json")
		})
	}
}

func TestRunIngest_DrainTimeoutExitsOneAndSaysHowManyAreMissing(t *testing.T) {
	t.Parallel()
	fake := &fakeDaybook{baseline: 10, process: false}
	srv := fake.start(t)

	code, rep, stderr := runJSON(t, smallLoad(srv.URL, "-drain-timeout", "1s")...)

	require.Equal(t, exitFail, code, stderr)
	requireAccountedFor(t, rep)
	require.Zero(t, rep.Events.Errors)
	require.NotNil(t, rep.Drain)
	require.False(t, rep.Drain.Finished)
	require.Equal(t, rep.Events.Accepted, rep.Drain.Missing)
	require.Equal(t, 10.0, rep.Drain.Final)
	requireVerified(t, rep, fake, "PENDING")
	require.Zero(t, rep.Verify.Completed)
	require.False(t, rep.OK)
	require.Contains(t, stderr, "still not COMPLETED")
}

// requireVerified checks that the verify phase read every sampled event once, without error, and
// found each in status.
func requireVerified(t *testing.T, rep Report, fake *fakeDaybook, status string) {
	t.Helper()
	require.NotNil(t, rep.Verify)
	// 200 events over 8 workers that keep up to 32 ids each: every one that was accepted, or,
	// where a worker sent more than 32, 32 of its own.
	require.Positive(t, rep.Verify.Checked)
	require.LessOrEqual(t, int64(rep.Verify.Checked), rep.Events.Accepted)
	require.Equal(t, int64(rep.Verify.Checked), fake.eventGets.Load())
	require.Equal(t, map[string]int{status: rep.Verify.Checked}, rep.Verify.ByStatus)
	require.Zero(t, rep.Verify.Errors, rep.Verify.LastError)
}

func TestRunIngest_VerifyCatchesADrainFinishedByOtherEvents(t *testing.T) {
	t.Parallel()
	fake := &fakeDaybook{counterOnly: true}
	srv := fake.start(t)

	code, rep, stderr := runJSON(t, smallLoad(srv.URL, "-drain-timeout", "10s")...)

	require.Equal(t, exitFail, code, stderr)
	requireAccountedFor(t, rep)
	require.Zero(t, rep.Events.Errors)
	require.True(t, rep.Drain.Finished, "the counter reached its target")
	requireVerified(t, rep, fake, "PENDING")
	require.Zero(t, rep.Verify.Completed)
	require.False(t, rep.OK)
	require.Contains(t, stderr, "the drain counter counted other events")
}

func TestRunIngest_VerifyCountsEventsItCannotRead(t *testing.T) {
	t.Parallel()
	fake := &fakeDaybook{process: true}
	srv := fake.start(t)
	api, err := client.New(srv.URL, client.WithHTTPClient(srv.Client()))
	require.NoError(t, err)

	v := verifySample(t.Context(), api, []string{"not-a-uuid", uuid.NewString()})

	require.Equal(t, 2, v.Checked)
	require.Zero(t, v.Completed)
	require.Empty(t, v.ByStatus)
	require.Equal(t, 2, v.Errors)
	require.Contains(t, v.LastError, "daybook: 404 Not Found: no event with id")
	require.Equal(t, int64(1), fake.eventGets.Load(), "an id that is not a UUID is not asked for")
}

func TestAcceptedIDs_TakesNewEventsOnlyAndAtMostN(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		answer string
		batch  bool
		n      int
		want   []string
	}{
		{"single", `{"id":"a","status":"PENDING","duplicate":false}`, false, 4, []string{"a"}},
		{"single without id", `{"status":"PENDING"}`, false, 4, nil},
		{"single with no room", `{"id":"a"}`, false, 0, nil},
		{"single not JSON", `accepted`, false, 4, nil},
		{
			"batch skips duplicates, errors and items without id",
			`{"items":[{"id":"a","status":"PENDING"},{"id":"b","status":"PENDING","duplicate":true},` +
				`{"id":"c","error":"bad"},{"status":"PENDING"},{"id":"d","status":202}]}`,
			true, 4, []string{"a", "d"},
		},
		{"batch stops at n", `{"items":[{"id":"a","status":"PENDING"},{"id":"b","status":"PENDING"}]}`, true, 1, []string{"a"}},
		{"batch not JSON", `[`, true, 4, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, acceptedIDs([]byte(tt.answer), tt.batch, tt.n))
		})
	}
}

func TestRunIngest_RateLimitedRequestsAreErrors(t *testing.T) {
	t.Parallel()
	fake := &fakeDaybook{process: true, rejectEvery: 2}
	srv := fake.start(t)

	code, rep, stderr := runJSON(t, smallLoad(srv.URL, "-drain-timeout", "10s")...)

	require.Equal(t, exitFail, code, stderr)
	requireAccountedFor(t, rep)
	require.Equal(t, rep.Requests.ByStatus["429"], rep.Events.ByOutcome.RateLimited)
	require.Equal(t, rep.Events.ByOutcome.RateLimited, rep.Events.Errors)
	require.Equal(t, rep.Requests.Sent/2, rep.Events.ByOutcome.RateLimited)
	require.InDelta(t, float64(rep.Events.Errors)/float64(rep.Events.Sent), rep.ErrorRate, 1e-9)
	require.Contains(t, rep.ErrorExamples, "HTTP 429")
	require.True(t, rep.Drain.Finished, "what was accepted still drains")
	require.False(t, rep.OK)
}

func TestRunIngest_WrongAPIKeyIsAnErrorAndSkipsTheDrain(t *testing.T) {
	t.Parallel()
	fake := &fakeDaybook{process: true, apiKey: "right"}
	srv := fake.start(t)

	code, rep, stderr := runJSON(t, smallLoad(srv.URL, "-api-key", "wrong")...)

	require.Equal(t, exitFail, code, stderr)
	requireAccountedFor(t, rep)
	require.Zero(t, rep.Events.Accepted)
	require.Equal(t, rep.Events.Sent, rep.Events.ByOutcome.OtherStatus)
	require.Equal(t, rep.Requests.Sent, rep.Requests.ByStatus["401"])
	require.Nil(t, rep.Drain)
	require.Equal(t, "skipped: no event was accepted", rep.DrainNote)
}

func TestRunIngest_WithoutMetricsNeedsDrainTimeoutZero(t *testing.T) {
	t.Parallel()
	fake := &fakeDaybook{noMetrics: true}
	srv := fake.start(t)

	code, _, stderr := runJSON(t, smallLoad(srv.URL)...)
	require.Equal(t, exitFail, code)
	require.Contains(t, stderr, "read baseline")
	require.Zero(t, fake.requests.Load(), "nothing is sent when the drain cannot be measured")

	code, rep, stderr := runJSON(t, smallLoad(srv.URL, "-drain-timeout", "0")...)
	require.Equal(t, exitOK, code, stderr)
	requireAccountedFor(t, rep)
	require.Nil(t, rep.Drain)
	require.Equal(t, "skipped: -drain-timeout 0", rep.DrainNote)
}

func TestRunIngest_UnreachableServerCountsTransportErrors(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now

	code, rep, stderr := runJSON(t, smallLoad(url, "-drain-timeout", "0", "-rate", "50")...)

	require.Equal(t, exitFail, code, stderr)
	require.Equal(t, int64(50), rep.Events.Scheduled)
	require.Equal(t, rep.Events.Sent, rep.Events.ByOutcome.Transport)
	require.Equal(t, rep.Requests.Sent, rep.Requests.TransportErrors)
	require.Contains(t, rep.ErrorExamples, "transport")
}
