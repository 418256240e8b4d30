package api

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/daybook/daybook/observability"
)

type remoteKey struct{}

// clientID is who the rate limit counts against: the API key when the
// request has one, else the remote address.
func clientID(ctx context.Context) string {
	if k, ok := keyFrom(ctx); ok {
		return "key:" + k.ID
	}
	host, _ := ctx.Value(remoteKey{}).(string)
	return host
}

// clientRate is the key's own rate limit; 0 means the gate's default.
func clientRate(ctx context.Context) float64 {
	k, _ := keyFrom(ctx)
	return k.RateLimit
}

// identify remembers the remote address for requests without a key.
func identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), remoteKey{}, remoteHost(r))))
	})
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// correlate gives every request a correlation id (the client's
// X-Correlation-ID when it is sane, else a new one), echoed in the response
// and carried to the worker in message metadata.
func (s *Server) correlate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Correlation-ID")
		if id == "" || len(id) > 128 || strings.ContainsAny(id, " \t\r\n\"") {
			id = uuid.NewString()
		}
		w.Header().Set("X-Correlation-ID", id)
		next.ServeHTTP(w, r.WithContext(observability.WithCorrelationID(r.Context(), id)))
	})
}

// instrument records request durations by route template.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		route := new(string) // filled in by the huma middleware routeLabel
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), patternKey{}, route)))
		if *route == "" {
			*route = "other"
		}
		if strings.HasPrefix(*route, "/events/ingest") {
			switch rec.status {
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
				s.deps.Metrics.EventsIngested.WithLabelValues("invalid").Inc()
			}
		}
		s.deps.Metrics.HTTPRequestDuration.WithLabelValues(r.Method, *route, strconv.Itoa(rec.status)).Observe(time.Since(start).Seconds())
	})
}

// tracerName is the instrumentation scope of the API's spans.
const tracerName = "github.com/daybook/daybook/api"

// traced gives every request a server span, continuing the caller's trace
// when it sends a W3C traceparent. It runs inside instrument, whose route
// pointer routeLabel fills in, so the span is named by path template. The
// span is in the request's context: admission carries it to the worker.
// Scrapes and probes get none: one trace per scrape would bury the rest.
func (s *Server) traced(next http.Handler) http.Handler {
	tracer := s.deps.Tracing.Tracer(tracerName)
	propagator := s.deps.Tracing.TextMapPropagator()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics", "/health", "/ready":
			next.ServeHTTP(w, r)
			return
		}
		method := spanMethod(r.Method)
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			semconv.HTTPRequestMethodKey.String(method), semconv.URLPath(r.URL.Path),
			semconv.ClientAddress(remoteHost(r)), semconv.UserAgentOriginal(r.UserAgent()),
		))
		defer span.End()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))

		if route, ok := ctx.Value(patternKey{}).(*string); ok && *route != "" {
			span.SetName(method + " " + *route)
			span.SetAttributes(semconv.HTTPRoute(*route))
		}
		span.SetAttributes(semconv.HTTPResponseStatusCode(rec.status))
		if id := w.Header().Get("X-Correlation-ID"); id != "" {
			span.SetAttributes(observability.CorrelationIDKey.String(id))
		}
		// 4xx is the client's doing: only a 5xx marks the server span failed.
		if rec.status >= http.StatusInternalServerError {
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(rec.status)))
			span.SetStatus(codes.Error, http.StatusText(rec.status))
		}
	})
}

// spanMethod keeps span names and attributes to the known methods: any
// other token a client sends becomes _OTHER, as the HTTP conventions ask.
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

type patternKey struct{}

// routeLabel tells instrument which operation served the request, so the
// histogram is labelled by path template, not by raw path.
func routeLabel(ctx huma.Context, next func(huma.Context)) {
	if p, ok := ctx.Context().Value(patternKey{}).(*string); ok {
		*p = ctx.Operation().Path
	}
	next(ctx)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// writeProblem answers with an RFC 9457 problem in huma's shape.
func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(huma.ErrorModel{Title: http.StatusText(status), Status: status, Detail: detail})
}
