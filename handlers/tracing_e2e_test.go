package handlers

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/redisstream"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/daybook/daybook/api"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/observability"
)

// These tests run the API in front of the worker: a trace starts at the
// HTTP request and crosses the queue in the message metadata.

// newAPI serves the real API (the real gate on the harness's Redis prefix
// and stream) until the test ends, and returns its URL.
func newAPI(t *testing.T, h *harness, tracing observability.Tracing) string {
	t.Helper()
	g, err := redisstream.NewGate(h.redis, redisstream.GateConfig{KeyPrefix: h.topics.Prefix, Stream: h.topics.Events()})
	require.NoError(t, err)
	srv := api.New(api.Deps{
		Pool: h.pool, Redis: h.redis, Gate: g, Events: h.events, Dead: h.dead,
		Metrics: observability.NewMetrics(), Logger: slog.New(slog.DiscardHandler), Tracing: tracing,
	}, api.Config{})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// post sends a request and returns the status code and body.
func post(t *testing.T, url, body string, header map[string]string) (int, []byte) {
	t.Helper()
	return send(t, http.MethodPost, url, body, header)
}

func send(t *testing.T, method, url, body string, header map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// waitEnded waits until n spans of the trace have ended: a server span ends
// just after its response is written, a consumer span just after the ack.
func waitEnded(t *testing.T, rec *tracetest.SpanRecorder, traceID string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	require.Eventually(t, func() bool { return len(spansOf(rec, traceID)) >= n }, 10*time.Second, 5*time.Millisecond)
	spans := spansOf(rec, traceID)
	require.Len(t, spans, n)
	return spans
}

// spansOf returns the ended spans of one trace ("" for all).
func spansOf(rec *tracetest.SpanRecorder, traceID string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if traceID == "" || s.SpanContext().TraceID().String() == traceID {
			out = append(out, s)
		}
	}
	return out
}

func spanOfKind(t *testing.T, spans []sdktrace.ReadOnlySpan, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanKind() == kind {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "spans of kind %s", kind)
	return found[0]
}

// TestTracing_IngestRequestAndItsProcessingAreOneTrace is the only test that
// sets the global tracer provider and propagator: the worker's middleware
// uses them, as in production after observability.SetupTracing. Workers of
// tests running alongside record spans too; only this trace's are looked at.
func TestTracing_IngestRequestAndItsProcessingAreOneTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	otel.SetTracerProvider(provider)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
		require.NoError(t, provider.Shutdown(context.Background()))
	})
	h := newHarness(t)
	url := newAPI(t, h, observability.Tracing{})
	traceID, callerSpanID, correlationID := randomHex(t, 16), randomHex(t, 8), "corr-"+randomHex(t, 4)

	status, body := post(t, url+"/events/ingest", `{"source":"shop","type":"order.placed","payload":{"total":"12.50"}}`, map[string]string{
		"traceparent": "00-" + traceID + "-" + callerSpanID + "-01", "tracestate": "vendor=abc",
		"X-Correlation-ID": correlationID,
	})
	require.Equal(t, http.StatusAccepted, status, "%s", body)
	var accepted api.IngestResult
	require.NoError(t, json.Unmarshal(body, &accepted))

	server := spanOfKind(t, waitEnded(t, rec, traceID, 1), trace.SpanKindServer)
	require.Equal(t, "POST /events/ingest", server.Name())
	require.Equal(t, callerSpanID, server.Parent().SpanID().String())
	require.True(t, server.Parent().IsRemote())
	require.Equal(t, map[string]any{
		"http.request.method": "POST", "http.route": "/events/ingest", "url.path": "/events/ingest",
		"http.response.status_code": int64(http.StatusAccepted), "client.address": "127.0.0.1",
		"user_agent.original": "Go-http-client/1.1", "daybook.correlation_id": correlationID,
	}, attrs(server.Attributes()))
	require.Equal(t, codes.Unset, server.Status().Code)

	// The stream entry carries the request span's context next to the correlation id.
	entries, err := h.redis.XRange(t.Context(), h.topics.Events(), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	messageUUID, ok := entries[0].Values[redisstream.FieldUUID].(string)
	require.True(t, ok)
	var metadata map[string]string
	require.NoError(t, json.Unmarshal([]byte(entries[0].Values[redisstream.FieldMetadata].(string)), &metadata))
	require.Equal(t, map[string]string{
		"correlation_id": correlationID,
		"traceparent":    "00-" + traceID + "-" + server.SpanContext().SpanID().String() + "-01",
		"tracestate":     "vendor=abc",
	}, metadata)

	h.start()
	h.waitStatus(uuid.MustParse(accepted.ID), ingest.StatusCompleted, 10*time.Second)
	spans := waitEnded(t, rec, traceID, 2)
	consumer := spanOfKind(t, spans, trace.SpanKindConsumer)
	require.Equal(t, "process "+h.topics.Events(), consumer.Name())
	require.Equal(t, server.SpanContext().SpanID(), consumer.Parent().SpanID())
	require.Equal(t, "vendor=abc", consumer.SpanContext().TraceState().String())
	require.Equal(t, map[string]any{
		"messaging.operation.type": "process", "messaging.operation.name": "process",
		"messaging.message.id": messageUUID, "messaging.destination.name": h.topics.Events(),
		"daybook.correlation_id": correlationID, "daybook.message.outcome": "processed",
	}, attrs(consumer.Attributes()))
	require.Equal(t, codes.Unset, consumer.Status().Code)
}

func TestTracing_RequestSpanIsNamedByRouteAndFailsOnlyOn5xx(t *testing.T) {
	t.Parallel()
	rec, tr := spanRecorder(t)
	// A gate on a closed client cannot enqueue: ingest answers 503.
	closed := redis.NewClient(testredis.Options(t))
	require.NoError(t, closed.Close())
	g, err := redisstream.NewGate(closed, redisstream.GateConfig{Stream: transport.EventsTopic})
	require.NoError(t, err)
	srv := api.New(api.Deps{
		Gate: g, Metrics: observability.NewMetrics(), Logger: slog.New(slog.DiscardHandler), Tracing: tr,
	}, api.Config{})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	for _, tc := range []struct {
		method     string
		path, body string
		wantName   string
		wantRoute  any
		wantCode   int64
		wantStatus sdktrace.Status
		wantError  any
	}{
		{path: "/events/ingest", body: `{"source":"shop","type":"t","payload":{}}`, wantName: "POST /events/ingest", wantRoute: "/events/ingest",
			wantCode: 503, wantStatus: sdktrace.Status{Code: codes.Error, Description: "Service Unavailable"}, wantError: "503"},
		{path: "/events/ingest", body: `{"source":`, wantName: "POST /events/ingest", wantRoute: "/events/ingest", wantCode: 400},
		{path: "/no/such/route", body: `{}`, wantName: "POST", wantCode: 404},
		{method: "PURGE", path: "/events/ingest", wantName: "_OTHER", wantCode: 404}, // no method of a client's invention in a span name
	} {
		rec.Reset()
		// Scrapes and probes are not traced: the one span that ends is the request's.
		for _, path := range []string{"/metrics", "/health"} {
			resp, err := hs.Client().Get(hs.URL + path)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			require.Equal(t, http.StatusOK, resp.StatusCode)
		}
		status, body := send(t, cmp.Or(tc.method, http.MethodPost), hs.URL+tc.path, tc.body, nil)
		require.EqualValues(t, tc.wantCode, status, "%s", body)
		s := waitEnded(t, rec, "", 1)[0]
		a := attrs(s.Attributes())
		require.Equal(t, tc.wantName, s.Name())
		require.Equal(t, trace.SpanKindServer, s.SpanKind())
		require.False(t, s.Parent().IsValid(), "no traceparent was sent")
		require.Equal(t, tc.wantCode, a["http.response.status_code"])
		require.Equal(t, tc.wantRoute, a["http.route"])
		require.Equal(t, tc.wantError, a["error.type"])
		require.Equal(t, tc.wantStatus, s.Status())
	}
}
