package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/api"
	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/config"
	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/handlers"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/migrations"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/replay"
	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/redisstream"
	"github.com/daybook/daybook/webhook"
)

type role int

const (
	roleAPI role = 1 << iota
	roleWorker
)

// app holds the process's connections.
type app struct {
	cfg       config.Config
	log       *slog.Logger
	pool      *pgxpool.Pool
	redisOpts *redis.Options
	redis     *redis.Client
	metrics   *observability.Metrics
	// wire is the transport DAYBOOK_QUEUE chose.
	wire wire
	// closers are closed with the app (the S3 archive's idle connections).
	closers []io.Closer
	// archive is the payload store, opened by the first role that needs it
	// (setup runs in one goroutine).
	archive archive.Store
}

// open reads the configuration, creates the database if missing, applies
// migrations under the advisory lock and connects to Postgres and Redis.
func open(ctx context.Context) (*app, error) {
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, err
	}
	log := observability.NewLogger(os.Stderr, cfg.LogLevel)
	// go-redis prints every failed dial to stderr; the breakers and the
	// fail-open warnings already report an outage, once per interval.
	redis.SetLogger(redisLogger{log})
	if err := migrations.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return nil, fmt.Errorf("%w\n(is Postgres running? `make run` starts a local one; or: docker compose up -d postgres redis)", err)
	}
	pool, err := newPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	m, err := migrations.New(pool, migrations.Files())
	if err != nil {
		pool.Close()
		return nil, err
	}
	applied, err := m.Up(ctx)
	if err != nil {
		pool.Close()
		return nil, err
	}
	for _, mig := range applied {
		log.Info("migration applied", "version", mig.Version, "name", mig.Name)
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opts.PoolSize = 128 // the API holds one connection per in-flight ingest
	// RESP2: Daybook uses no push notifications, and RESP3 makes go-redis look
	// for them around every command (7% of the worker's CPU under load).
	opts.Protocol = 2
	w, err := openWire(ctx, cfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	if !w.redisRequired() {
		// Redis is the fast path that ingestion fails open around: a failed
		// call must fail at once, not after go-redis's retries and re-dials.
		opts.MaxRetries, opts.DialerRetries, opts.DialTimeout = -1, 1, time.Second
	}
	rdb := redis.NewClient(opts)
	a := &app{cfg: cfg, log: log, pool: pool, redisOpts: opts, redis: rdb, metrics: observability.NewMetrics(), wire: w}
	if err := rdb.Ping(ctx).Err(); err != nil {
		if w.redisRequired() {
			a.close()
			return nil, fmt.Errorf("redis at %s: %w\n(is Redis running? `make run` starts a local one; or: docker compose up -d postgres redis)", opts.Addr, err)
		}
		// Redis is only the fast path: start without it.
		log.Warn("redis unreachable: ingestion fails open (no rate limit, duplicates caught by Postgres) until it is back", "addr", opts.Addr, "error", err)
	}
	return a, nil
}

// openPool is what the operator's commands need: the configured database,
// created if missing, without migrating it.
func openPool(ctx context.Context) (*pgxpool.Pool, error) {
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, err
	}
	if err := migrations.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	return newPool(ctx, cfg.DatabaseURL)
}

func newPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if pcfg.MaxConns < 32 {
		pcfg.MaxConns = 32 // consumers, relay and API share it; Postgres allows 100
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	return pool, nil
}

func (a *app) close() {
	for _, c := range a.closers {
		c.Close()
	}
	a.wire.close()
	a.pool.Close()
	a.redis.Close()
}

func (a *app) topics() transport.Topics { return transport.Topics{Prefix: a.cfg.KeyPrefix} }

// serve runs the API and/or the worker until ctx ends, then shuts both down
// within ShutdownTimeout: the HTTP server stops taking requests and finishes
// those in flight; the worker drains.
func serve(ctx context.Context, roles role) error {
	a, err := open(ctx)
	if err != nil {
		return err
	}
	defer a.close()
	stopTracing, err := observability.SetupTracing(ctx, "daybook", a.log)
	if err != nil {
		return err
	}
	defer func() { // after the API and worker drained, before a.close; ctx has ended by then
		if err := stopTracing(context.WithoutCancel(ctx)); err != nil {
			a.log.Warn("flush traces", "error", err)
		}
	}()

	if addr := os.Getenv("DAYBOOK_PPROF_ADDR"); addr != "" {
		// Profiling for load investigations: off unless asked for, loopback only by convention.
		go func() { //nolint:gosec // G118: the profiler lives as long as the process, like its listener
			mux := http.NewServeMux()
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			a.log.Warn("pprof listening", "addr", addr, "error", srv.ListenAndServe())
		}()
	}

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	if roles&roleWorker != 0 {
		w, err := a.newWorker(ctx)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(runCtx); err != nil {
				errs <- fmt.Errorf("worker: %w", err)
				cancel()
			}
		}()
	}
	{
		// A worker alone serves /health and /metrics on an address of its own,
		// so that serve and worker start side by side on one host.
		srv := a.opsServer(a.cfg.WorkerAddr)
		if roles&roleAPI != 0 {
			if srv, err = a.newHTTPServer(ctx); err != nil {
				return err
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.log.Info("http listening", "addr", srv.Addr)
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("http: %w", err)
				cancel()
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-runCtx.Done()
			// The run context has ended: the shutdown gets a deadline of its own.
			shutdownCtx, done := context.WithTimeout(context.WithoutCancel(runCtx), a.cfg.ShutdownTimeout)
			defer done()
			if err := srv.Shutdown(shutdownCtx); err != nil {
				errs <- fmt.Errorf("http shutdown: %w", err)
			}
		}()
	}
	<-runCtx.Done()
	a.log.Info("shutting down", "timeout", a.cfg.ShutdownTimeout.String())
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	a.log.Info("stopped")
	return errors.Join(all...)
}

// security builds the API's authentication: the keyring (after storing the
// bootstrap key, if one is given) and the webhook verifier. It refuses to
// serve an open API on an address other hosts can reach, and logs every
// check that is off.
func (a *app) security(ctx context.Context) (api.Config, error) {
	var cfg api.Config
	if a.cfg.WebhookSecret != "" {
		v, err := webhook.NewVerifier(a.cfg.WebhookSecret, nil)
		if err != nil {
			return cfg, fmt.Errorf("DAYBOOK_WEBHOOK_SECRET: %w", err)
		}
		cfg.Webhook = v
	} else {
		a.log.Warn("DAYBOOK_WEBHOOK_SECRET is unset: ingest does not require Standard Webhooks signatures")
	}
	if a.cfg.Auth == config.AuthOff {
		a.log.Warn("DAYBOOK_AUTH=off: every route is served to anyone, without an API key", "addr", a.cfg.HTTPAddr)
		cfg.Auth = api.AuthOff
		return cfg, nil
	}
	store := apikey.NewStore(a.pool)
	if a.cfg.BootstrapKey != "" {
		scopes, err := apikey.ParseScopes(a.cfg.BootstrapScopes)
		if err != nil {
			return cfg, fmt.Errorf("DAYBOOK_BOOTSTRAP_SCOPES: %w", err)
		}
		key, created, err := store.Import(ctx, apikey.ImportParams{Key: a.cfg.BootstrapKey, Name: "bootstrap", Scopes: scopes})
		if err != nil {
			return cfg, fmt.Errorf("DAYBOOK_BOOTSTRAP_KEY: %w", err)
		}
		if created {
			a.log.Info("bootstrap API key stored (hashed)", "id", key.ID, "scopes", key.Scopes)
		}
	}
	keys, err := apikey.NewKeyring(store, apikey.KeyringConfig{Logger: a.log})
	if err != nil {
		return cfg, err
	}
	if err := keys.Start(ctx); err != nil {
		return cfg, fmt.Errorf("load API keys: %w", err)
	}
	a.closers = append(a.closers, closerFunc(keys.Stop))
	cfg.Auth, cfg.Keys = api.AuthKeys, keys
	if keys.Open() {
		if !loopback(a.cfg.HTTPAddr) {
			return cfg, fmt.Errorf("DAYBOOK_HTTP_ADDR=%s is reachable from other hosts and no API key exists: "+
				"create one (daybook keys create --name N --scopes S1,S2), give one in DAYBOOK_BOOTSTRAP_KEY, "+
				"or set DAYBOOK_AUTH=off to serve without authentication", a.cfg.HTTPAddr)
		}
		a.log.Warn("no API key exists: the API is open on this loopback address until one is created (daybook keys create)", "addr", a.cfg.HTTPAddr)
	}
	return cfg, nil
}

// loopback reports an address only this host can reach. A host name other
// than localhost is not trusted to resolve to loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// replayer puts events back on the work topic (and log events on the log topic).
func (a *app) replayer(ctx context.Context) (*replay.Replayer, error) {
	pub, err := a.wire.publisher(ctx, a)
	if err != nil {
		return nil, err
	}
	return replay.New(ingest.NewStore(a.pool), deadletter.NewStore(a.pool), transport.Sender{Pub: pub}, a.topics().Events()), nil
}

// failOpenLogEverySeconds spaces the fail-open warnings.
const failOpenLogEverySeconds = 10

// closerFunc adapts a func() to io.Closer.
type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }

func (a *app) newHTTPServer(ctx context.Context) (*http.Server, error) {
	security, err := a.security(ctx)
	if err != nil {
		return nil, err
	}
	g, err := redisstream.NewGate(a.redis, redisstream.GateConfig{
		KeyPrefix: a.cfg.KeyPrefix, Stream: a.topics().Events(),
		RatePerSecond: a.cfg.RateLimit, IdempotencyTTL: a.cfg.IdempotencyTTL,
	})
	if err != nil {
		return nil, err
	}
	replayer, err := a.replayer(ctx)
	if err != nil {
		return nil, err
	}
	book, err := ledger.NewService(a.pool, ledger.Config{
		Lock: a.cfg.LedgerLock, Redis: a.redis, KeyPrefix: a.cfg.KeyPrefix,
		OnRetry: func(reason string) { a.metrics.LedgerTxRetries.WithLabelValues(reason).Inc() },
	})
	if err != nil {
		return nil, err
	}
	admitter, err := a.wire.admitter(a, g)
	if err != nil {
		return nil, err
	}
	archived, err := a.openArchive()
	if err != nil {
		return nil, err
	}
	srv := api.New(api.Deps{
		Pool: a.pool, Redis: a.redis, RedisOptional: !a.wire.redisRequired(), QueueReady: a.wire.ready(), Gate: admitter, Events: ingest.NewStore(a.pool), Dead: deadletter.NewStore(a.pool),
		Replayer: replayer, Ledger: book, Metrics: a.metrics, Logger: a.log, Archive: archived,
	}, security)
	return &http.Server{
		Addr:              a.cfg.HTTPAddr,
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}, nil
}

func (a *app) opsServer(addr string) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	return &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
}

func (a *app) newWorker(ctx context.Context) (*handlers.Worker, error) {
	store, err := a.openArchive()
	if err != nil {
		return nil, err
	}
	work, log, err := a.wire.worker(ctx, a, hostName())
	if err != nil {
		return nil, err
	}
	w := a.cfg.Worker
	return handlers.NewWorker(handlers.Deps{
		Pool: a.pool, Work: work, Log: log, Redis: a.redis, Archive: store, Metrics: a.metrics, Logger: a.log,
	}, handlers.Config{
		Topics:      a.topics(),
		MaxAttempts: w.MaxAttempts, RetryBackoff: w.RetryBackoff, RetryBackoffMax: w.RetryBackoffMax,
		StuckAfter: w.StuckAfter, RescueInterval: w.RescueInterval,
		BreakerProbeInterval: w.BreakerProbeInterval, AttemptTimeout: w.AttemptTimeout,
		ShutdownTimeout: a.cfg.ShutdownTimeout, ReconcileInterval: w.ReconcileInterval,
		NoDedup: !w.Dedup,
	})
}

// redisLogger sends go-redis's own messages to the log at debug level.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
