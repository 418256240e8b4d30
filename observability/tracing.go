package observability

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// The standard OpenTelemetry variables SetupTracing reads itself; the OTLP
// exporter and the SDK read the rest (OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, ...).
const (
	EnvOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envOTLPTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envSDKDisabled        = "OTEL_SDK_DISABLED"
	envTracesExporter     = "OTEL_TRACES_EXPORTER"
)

// otlpProtocol is the only OTLP protocol the exporter speaks. Anything else
// (grpc to port 4317) is refused at start rather than failing every export.
const otlpProtocol = "http/protobuf"

// tracingFlushTimeout bounds the final flush of buffered spans at shutdown:
// an unreachable collector must not hold the process up.
const tracingFlushTimeout = 5 * time.Second

// CorrelationIDKey is the span attribute holding the correlation id, on the
// HTTP span and on the worker's span alike, so one search finds both.
const CorrelationIDKey = attribute.Key("daybook.correlation_id")

// SetupTracing turns tracing on when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and neither OTEL_SDK_DISABLED=true
// nor OTEL_TRACES_EXPORTER=none): it installs a global tracer provider that
// batches spans to that OTLP/HTTP endpoint, and the W3C trace-context
// propagator. Otherwise it installs nothing, starts nothing, and the globals
// stay no-ops: no span is recorded and no trace context is propagated.
//
// shutdown flushes the spans still buffered, within ctx and at most
// tracingFlushTimeout; give it a context that is not already cancelled.
func SetupTracing(ctx context.Context, serviceName string, logger *slog.Logger) (shutdown func(context.Context) error, err error) {
	endpoint := cmp.Or(os.Getenv(EnvOTLPTracesEndpoint), os.Getenv(EnvOTLPEndpoint))
	if endpoint == "" || strings.EqualFold(strings.TrimSpace(os.Getenv(envSDKDisabled)), "true") ||
		strings.TrimSpace(os.Getenv(envTracesExporter)) == "none" {
		logger.Info("tracing off: set " + EnvOTLPEndpoint + " to export traces")
		return func(context.Context) error { return nil }, nil
	}
	if p := strings.TrimSpace(cmp.Or(os.Getenv(envOTLPTracesProtocol), os.Getenv(envOTLPProtocol), otlpProtocol)); p != otlpProtocol {
		return nil, fmt.Errorf("tracing: OTLP protocol %q is not supported, only %s (port 4318)", p, otlpProtocol)
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override serviceName.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing exporter: %w", err)
	}
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	otel.SetTracerProvider(provider)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	// Export failures (collector down) are reported here, one per batch, not returned to anyone.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { logger.Warn("tracing", "error", err) }))
	logger.Info("tracing on", "endpoint", redacted(endpoint), "service", serviceName)

	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, tracingFlushTimeout)
		defer cancel()
		if err := provider.Shutdown(ctx); err != nil {
			return fmt.Errorf("flush traces: %w", err)
		}
		return nil
	}, nil
}

// redacted hides any password in an endpoint URL before it is logged.
func redacted(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// Tracing is the tracer provider and propagator a component traces with. The
// zero value means the globals, which SetupTracing installs and which are
// no-ops until it does; a test sets both fields to its own, so that tests
// running in parallel do not share spans.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator
}

// Tracer returns the named tracer of t's provider. A global one obtained
// before SetupTracing runs forwards to the provider it installs.
func (t Tracing) Tracer(name string) trace.Tracer {
	if t.Provider == nil {
		return otel.Tracer(name)
	}
	return t.Provider.Tracer(name)
}

// TextMapPropagator returns t's propagator.
func (t Tracing) TextMapPropagator() propagation.TextMapPropagator {
	if t.Propagator == nil {
		return otel.GetTextMapPropagator()
	}
	return t.Propagator
}
