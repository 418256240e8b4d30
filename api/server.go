package api

import (
	"context"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/replay"
	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/webhook"
)

// Config holds the API's security settings. The zero value is a fresh
// install: no key exists, so every route is open (on loopback only).
type Config struct {
	Auth AuthMode
	// Keys authenticates requests; nil means no key exists.
	Keys Keyring
	// Webhook, when set, requires Standard Webhooks signatures on ingest,
	// whose webhook-id then is the idempotency key.
	Webhook *webhook.Verifier
}

// Deps are the API's collaborators.
type Deps struct {
	Pool  *pgxpool.Pool
	Redis redis.UniversalClient
	// RedisOptional: Redis is only the fast path (SQS mode), so /ready reports
	// it without failing on it.
	RedisOptional bool
	Gate          transport.Admitter
	Events        *ingest.Store
	Dead          *deadletter.Store
	Replayer      *replay.Replayer
	Ledger        *ledger.Service
	Metrics       *observability.Metrics
	Logger        *slog.Logger
	// QueueReady checks that the queue can take messages (for /ready).
	QueueReady func(context.Context) error
	// Tracing is what request spans are recorded with and how trace context is
	// read from requests and written into message metadata; the zero value
	// uses the globals observability.SetupTracing installs.
	Tracing observability.Tracing
	// Archive is where GET /events/{id}/payload reads payloads back from.
	Archive archive.Store
}

// Server is the HTTP API.
type Server struct {
	deps    Deps
	cfg     Config
	api     huma.API
	handler http.Handler
}

// okForRepeat declares the 200 an idempotent create answers when its key is
// repeated, with the body type of its default status; huma documents only the
// default status of an operation by itself.
func (s *Server) okForRepeat(body any, description string) map[string]*huma.Response {
	schema := s.api.OpenAPI().Components.Schemas.Schema(reflect.TypeOf(body), true, "")
	return map[string]*huma.Response{"200": {
		Description: description,
		Content:     map[string]*huma.MediaType{"application/json": {Schema: schema}},
	}}
}

// Limits of the HTTP contract.
const (
	EventBodyBytesMax = 256 << 10
	BatchBodyBytesMax = 16 << 20
	ListLimitDefault  = 50
)

// New builds the server and registers every operation.
func New(deps Deps, cfg Config) *Server {
	mux := http.NewServeMux()
	hcfg := huma.DefaultConfig("Daybook", "1.0.0")
	hcfg.CreateHooks = nil // no $schema links in bodies: responses keep the documented shape
	hcfg.Info.Description = "Event ingestion engine and double-entry ledger on one event-sourced core."
	hcfg.Servers = []*huma.Server{{URL: "http://localhost:8080", Description: "local (make run)"}}
	hcfg.Components.SecuritySchemes = securitySchemes()
	hapi := humago.New(mux, hcfg)
	s := &Server{deps: deps, cfg: cfg, api: hapi}
	hapi.UseMiddleware(routeLabel, s.authorize, s.checkBody)
	s.registerIngest()
	s.registerEvents()
	s.registerPayload()
	s.registerAdmin()
	s.registerLedger()
	s.registerOps()
	for _, item := range hapi.OpenAPI().Paths {
		for _, op := range []*huma.Operation{item.Get, item.Put, item.Post, item.Delete, item.Patch, item.Head, item.Options} {
			if op != nil {
				checkDeclarations(op)
			}
		}
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(deps.Metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path)
	})
	s.handler = s.instrument(s.traced(s.correlate(identify(mux))))
	return s
}

// Handler is the whole HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// API exposes the huma API (for printing the OpenAPI document).
func (s *Server) API() huma.API { return s.api }

// OpenAPI builds the document without any dependency: `daybook openapi` uses it.
func OpenAPI() *huma.OpenAPI {
	return New(Deps{Metrics: observability.NewMetrics(), Logger: slog.New(slog.DiscardHandler)}, Config{}).api.OpenAPI()
}

// retryAfter attaches a Retry-After header (whole seconds, at least 1) to err.
func retryAfter(err error, d time.Duration) error {
	secs := int((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return huma.ErrorWithHeaders(err, http.Header{"Retry-After": {strconv.Itoa(secs)}})
}

// unavailable is the 503 for a dependency that cannot take the request.
func unavailable(msg string, err error) error {
	return retryAfter(huma.Error503ServiceUnavailable(msg, err), time.Second)
}
