package api

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
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

type clientKey struct{}

// clientID is who the rate limit counts against: the API key (hashed) when
// there is one, else the remote address.
func clientID(ctx context.Context) string {
	id, _ := ctx.Value(clientKey{}).(string)
	return id
}

// authenticate checks the API key and HMAC signature of ingest requests and
// the bearer token of admin requests, when each is configured, before any
// parsing: a request that fails here costs almost nothing.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		switch {
		case strings.HasPrefix(path, "/events/ingest"):
			apiKey := r.Header.Get("X-API-Key")
			if len(s.cfg.APIKeys) > 0 && !oneOf(apiKey, s.cfg.APIKeys) {
				s.deps.Metrics.EventsIngested.WithLabelValues("unauthorized").Inc()
				writeProblem(w, http.StatusUnauthorized, "missing or unknown X-API-Key")
				return
			}
			id := remoteHost(r)
			if apiKey != "" {
				sum := sha256.Sum256([]byte(apiKey))
				id = "key:" + hex.EncodeToString(sum[:8])
			}
			r = r.WithContext(context.WithValue(r.Context(), clientKey{}, id))
			if s.cfg.HMACSecret != "" {
				limit := int64(EventBodyBytesMax)
				if path == "/events/ingest/batch" {
					limit = BatchBodyBytesMax
				}
				body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
				if err != nil {
					writeProblem(w, http.StatusBadRequest, "cannot read body")
					return
				}
				if int64(len(body)) > limit {
					writeProblem(w, http.StatusRequestEntityTooLarge, "body larger than "+strconv.FormatInt(limit, 10)+" bytes")
					return
				}
				if !validSignature(s.cfg.HMACSecret, body, r.Header.Get("X-Signature")) {
					s.deps.Metrics.EventsIngested.WithLabelValues("unauthorized").Inc()
					writeProblem(w, http.StatusUnauthorized, "missing or wrong X-Signature (want sha256=<hex HMAC-SHA256 of the body>)")
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
		case strings.HasPrefix(path, "/admin/"):
			if s.cfg.AdminToken != "" {
				// The scheme name is case-insensitive (RFC 9110 section 11.1).
				scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
				if !ok || !strings.EqualFold(scheme, "Bearer") || !equal(token, s.cfg.AdminToken) {
					w.Header().Set("WWW-Authenticate", `Bearer realm="daybook-admin"`)
					writeProblem(w, http.StatusUnauthorized, "admin routes need Authorization: Bearer <DAYBOOK_ADMIN_TOKEN>")
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// equal compares secrets in constant time; hashing first makes the time
// independent of the lengths too.
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

func oneOf(key string, keys []string) bool {
	found := 0
	for _, k := range keys {
		if equal(key, k) {
			found = 1 // no early return: every key is compared
		}
	}
	return key != "" && found == 1
}

func validSignature(secret string, body []byte, header string) bool {
	sig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
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
