package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestHealth_Answers200(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	r := s.get("/health")

	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.Equal(t, map[string]any{"status": "ok"}, fields(t, r))
}

func TestReady_Answers200WithEachCheck(t *testing.T) {
	t.Parallel()
	s := newServer(t, withQueueReady(func(context.Context) error { return nil }))

	r := s.get("/ready")

	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	require.Equal(t, map[string]any{
		"status": "ready",
		"checks": map[string]any{"postgres": "ok", "redis": "ok", "queue": "ok"},
	}, fields(t, r))
}

func TestReady_Answers503NamingWhatIsDown(t *testing.T) {
	t.Parallel()
	s := newServer(t, withQueueReady(func(context.Context) error { return errors.New("no route to queue") }))

	r := s.get("/ready")

	p := requireProblem(t, r, http.StatusServiceUnavailable)
	require.Equal(t, "not ready: queue unreachable", p.Detail)
}

func TestUnknownRoute_Answers404Problem(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	p := requireProblem(t, s.get("/no/such/route"), http.StatusNotFound)

	require.Equal(t, "no such route: GET /no/such/route", p.Detail)
}

func TestCorrelationID_ClientsIsEchoedAndCarriedOnTheQueue(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	r := s.ingest(`{"event_id":"c-1","source":"c","type":"t","payload":{}}`, "X-Correlation-ID", "client-corr-1")

	require.Equal(t, http.StatusAccepted, r.status)
	require.Equal(t, "client-corr-1", r.header.Get("X-Correlation-ID"))
	entries, err := s.redis.XRange(t.Context(), s.stream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	var md map[string]string
	require.NoError(t, json.Unmarshal([]byte(entries[0].Values["metadata"].(string)), &md))
	require.Equal(t, map[string]string{"correlation_id": "client-corr-1"}, md)
	require.Equal(t, "client-corr-1", s.streamEvents()[0].CorrelationID)

	// Errors carry it too.
	require.Equal(t, "client-corr-2", s.get("/nowhere", "X-Correlation-ID", "client-corr-2").header.Get("X-Correlation-ID"))
}

func TestCorrelationID_GeneratedWhenMissingOrUnfit(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	for name, sent := range map[string]string{
		"missing":   "",
		"too long":  strings.Repeat("c", 129),
		"has quote": `a"b`,
	} {
		var r reply
		if sent == "" {
			r = s.get("/health")
		} else {
			r = s.get("/health", "X-Correlation-ID", sent)
		}
		got := r.header.Get("X-Correlation-ID")
		_, err := uuid.Parse(got)
		require.NoError(t, err, "%s: %q", name, got)
	}
	a, b := s.get("/health").header.Get("X-Correlation-ID"), s.get("/health").header.Get("X-Correlation-ID")
	require.NotEqual(t, a, b, "a new id per request")
}

func TestMetrics_CountAcceptedIngest(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	requireAccepted(t, s.ingest(`{"event_id":"m-1","source":"c","type":"t","payload":{}}`), "m-1")

	r := s.get("/metrics")

	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.header.Get("Content-Type"), "text/plain")
	require.Contains(t, string(r.body), "\ndaybook_events_ingested_total{result=\"accepted\"} 1\n")
	require.Contains(t, string(r.body), `daybook_http_request_duration_seconds_count{code="202",method="POST",route="/events/ingest"} 1`)
}

func TestMetrics_CountRefusedIngestAsInvalid(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	requireProblem(t, s.ingest(`{bad`), http.StatusBadRequest)
	requireProblem(t, s.ingest(`{"source":"","type":"t","payload":{}}`), http.StatusUnprocessableEntity)

	r := s.get("/metrics")

	require.Contains(t, string(r.body), "\ndaybook_events_ingested_total{result=\"invalid\"} 2\n")
}

func TestOpenAPI_DocumentListsTheIngestOperations(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	r := s.get("/openapi.json")

	require.Equal(t, http.StatusOK, r.status)
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(r.body, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	require.Contains(t, doc.Paths["/events/ingest"], "post")
	require.Contains(t, doc.Paths["/events/ingest/batch"], "post")
	require.Contains(t, doc.Paths["/events/{id}"], "get")
	require.Contains(t, doc.Paths["/admin/replay/{id}"], "post")
}
