package observability

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

// These tests change the process environment (t.Setenv), so none of them is
// parallel; and SetupTracing sets the process-wide tracer provider.

// clearOTelEnv unsets, for the test, every variable that would change what
// SetupTracing does, whatever the machine running the tests has set.
func clearOTelEnv(t *testing.T) {
	t.Helper()
	for _, name := range []string{
		EnvOTLPEndpoint, EnvOTLPTracesEndpoint, envOTLPProtocol, envOTLPTracesProtocol, envSDKDisabled, envTracesExporter,
		"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_COMPRESSION",
		"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER",
	} {
		t.Setenv(name, "")
	}
}

// logLines decodes the JSON log lines written to buf.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var lines []map[string]any
	dec := json.NewDecoder(buf)
	for {
		var line map[string]any
		if err := dec.Decode(&line); err == io.EOF {
			return lines
		} else {
			require.NoError(t, err)
		}
		delete(line, "time")
		lines = append(lines, line)
	}
}

func TestSetupTracing_OffInstallsNothing(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"no endpoint":                {},
		"sdk disabled":               {EnvOTLPEndpoint: "http://127.0.0.1:4318", envSDKDisabled: "true"},
		"traces exporter none":       {EnvOTLPTracesEndpoint: "http://127.0.0.1:4318/v1/traces", envTracesExporter: "none"},
		"sdk disabled, any case":     {EnvOTLPEndpoint: "http://127.0.0.1:4318", envSDKDisabled: " TRUE "},
		"no endpoint, grpc protocol": {envOTLPProtocol: "grpc"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range env {
				t.Setenv(k, v)
			}
			provider, propagator := otel.GetTracerProvider(), otel.GetTextMapPropagator()
			existing := goleak.IgnoreCurrent()
			var logs bytes.Buffer

			shutdown, err := SetupTracing(t.Context(), "daybook", NewLogger(&logs, "info"))
			require.NoError(t, err)

			require.True(t, provider == otel.GetTracerProvider(), "the global tracer provider was replaced")
			require.True(t, propagator == otel.GetTextMapPropagator(), "the global propagator was replaced")
			goleak.VerifyNone(t, existing)
			require.NoError(t, shutdown(t.Context()))
			require.Equal(t, []map[string]any{
				{"level": "INFO", "msg": "tracing off: set OTEL_EXPORTER_OTLP_ENDPOINT to export traces"},
			}, logLines(t, &logs))
		})
	}
}

func TestSetupTracing_RefusesAProtocolOtherThanHTTPProtobuf(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv(EnvOTLPEndpoint, "http://127.0.0.1:4317")
	t.Setenv(envOTLPProtocol, "http/protobuf")
	t.Setenv(envOTLPTracesProtocol, "grpc") // the signal's own setting wins
	provider := otel.GetTracerProvider()

	shutdown, err := SetupTracing(t.Context(), "daybook", NewLogger(io.Discard, "info"))

	require.EqualError(t, err, `tracing: OTLP protocol "grpc" is not supported, only http/protobuf (port 4318)`)
	require.Nil(t, shutdown)
	require.True(t, provider == otel.GetTracerProvider(), "the global tracer provider was replaced")
}

// otlpRequest is one export an OTLP/HTTP collector received.
type otlpRequest struct {
	path, contentType, apiKey string
	body                      *coltracepb.ExportTraceServiceRequest
}

// collector is a real HTTP server speaking the receiving side of OTLP/HTTP.
type collector struct {
	url string
	mu  sync.Mutex
	got []otlpRequest
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(raw, body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.got = append(c.got, otlpRequest{path: r.URL.Path, contentType: r.Header.Get("Content-Type"), apiKey: r.Header.Get("X-Api-Key"), body: body})
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close) // closes the exporter's kept-alive connections too
	c.url = srv.URL
	return c
}

func (c *collector) requests() []otlpRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]otlpRequest(nil), c.got...)
}

func TestSetupTracing_ExportsBatchedSpansToTheEndpointAtShutdown(t *testing.T) {
	clearOTelEnv(t)
	col := newCollector(t)
	t.Setenv(EnvOTLPEndpoint, col.url)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k-123")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000") // an hour: only the shutdown flush can send the span
	var logs bytes.Buffer

	shutdown, err := SetupTracing(t.Context(), "daybook-test", NewLogger(&logs, "info"))
	require.NoError(t, err)

	ctx, span := otel.Tracer("daybook/test").Start(t.Context(), "ingest one event")
	require.True(t, span.IsRecording())
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	sc := span.SpanContext()
	require.Equal(t, propagation.MapCarrier{"traceparent": "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"}, carrier)
	span.End()
	require.Empty(t, col.requests(), "the batch processor sent before its delay")

	require.NoError(t, shutdown(t.Context()))

	got := col.requests()
	require.Len(t, got, 1)
	require.Equal(t, "/v1/traces", got[0].path)
	require.Equal(t, "application/x-protobuf", got[0].contentType)
	require.Equal(t, "k-123", got[0].apiKey, "OTEL_EXPORTER_OTLP_HEADERS not applied")
	rs := got[0].body.GetResourceSpans()
	require.Len(t, rs, 1)
	resource := map[string]string{}
	for _, kv := range rs[0].GetResource().GetAttributes() {
		resource[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	require.Equal(t, "daybook-test", resource["service.name"])
	require.Equal(t, "opentelemetry", resource["telemetry.sdk.name"])
	require.Len(t, rs[0].GetScopeSpans(), 1)
	require.Equal(t, "daybook/test", rs[0].GetScopeSpans()[0].GetScope().GetName())
	spans := rs[0].GetScopeSpans()[0].GetSpans()
	require.Len(t, spans, 1)
	require.Equal(t, "ingest one event", spans[0].GetName())
	require.Equal(t, sc.TraceID().String(), hex.EncodeToString(spans[0].GetTraceId()))

	require.Equal(t, []map[string]any{
		{"level": "INFO", "msg": "tracing on", "endpoint": col.url, "service": "daybook-test"},
	}, logLines(t, &logs))
}

func TestSetupTracing_ServiceNameFromEnvironmentWins(t *testing.T) {
	clearOTelEnv(t)
	col := newCollector(t)
	t.Setenv(EnvOTLPTracesEndpoint, col.url+"/custom/traces") // used as is: no /v1/traces appended
	t.Setenv("OTEL_SERVICE_NAME", "daybook-worker")

	shutdown, err := SetupTracing(t.Context(), "daybook", NewLogger(io.Discard, "info"))
	require.NoError(t, err)
	_, span := otel.Tracer("daybook/test").Start(t.Context(), "work")
	span.End()
	require.NoError(t, shutdown(t.Context()))

	got := col.requests()
	require.Len(t, got, 1)
	require.Equal(t, "/custom/traces", got[0].path)
	var service string
	for _, kv := range got[0].body.GetResourceSpans()[0].GetResource().GetAttributes() {
		if kv.GetKey() == "service.name" {
			service = kv.GetValue().GetStringValue()
		}
	}
	require.Equal(t, "daybook-worker", service)
}

func TestRedacted_HidesThePassword(t *testing.T) {
	t.Parallel()
	require.Equal(t, "https://user:xxxxx@collector:4318/v1/traces", redacted("https://user:secret@collector:4318/v1/traces"))
	require.Equal(t, "http://collector:4318", redacted("http://collector:4318"))
	require.Equal(t, "(unparsable)", redacted("http://[::1"))
}

func TestTracing_ZeroValueUsesTheGlobalsAndFieldsReplaceThem(t *testing.T) {
	t.Parallel()
	require.True(t, otel.GetTextMapPropagator() == Tracing{}.TextMapPropagator())

	rec := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { require.NoError(t, provider.Shutdown(context.Background())) })
	own := Tracing{Provider: provider, Propagator: propagation.Baggage{}}
	_, span := own.Tracer("daybook/test").Start(t.Context(), "work")
	span.End()
	require.Len(t, rec.Ended(), 1)
	require.Equal(t, "daybook/test", rec.Ended()[0].InstrumentationScope().Name)
	require.Equal(t, propagation.Baggage{}, own.TextMapPropagator())
}
