package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/api"
	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/config"
	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/gate"
	"github.com/daybook/daybook/handlers"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/migrations"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/queue"
	"github.com/daybook/daybook/replay"
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
	// closers are closed with the app (the S3 archive's idle connections).
	closers []io.Closer
}

// open reads the configuration, creates the database if missing, applies
// migrations under the advisory lock and connects to Postgres and Redis.
func open(ctx context.Context) (*app, error) {
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, err
	}
	log := observability.NewLogger(os.Stderr, cfg.LogLevel)
	if cfg.Queue == config.QueueSQS {
		return nil, errors.New("DAYBOOK_QUEUE=sqs is not available in this build yet; use redis")
	}
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
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		pool.Close()
		rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w\n(is Redis running? `make run` starts a local one; or: docker compose up -d postgres redis)", opts.Addr, err)
	}
	return &app{cfg: cfg, log: log, pool: pool, redisOpts: opts, redis: rdb, metrics: observability.NewMetrics()}, nil
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
	a.pool.Close()
	a.redis.Close()
}

func (a *app) topics() queue.Topics { return queue.Topics{Prefix: a.cfg.KeyPrefix} }

// serve runs the API and/or the worker until ctx ends, then shuts both down
// within ShutdownTimeout: the HTTP server stops taking requests and finishes
// those in flight; the worker drains.
func serve(ctx context.Context, roles role) error {
	a, err := open(ctx)
	if err != nil {
		return err
	}
	defer a.close()
	a.warnInsecure()

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
		w, err := a.newWorker()
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
		// A worker alone still serves /health and /metrics on the same address.
		srv := a.opsServer()
		if roles&roleAPI != 0 {
			if srv, err = a.newHTTPServer(); err != nil {
				return err
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.log.Info("http listening", "addr", a.cfg.HTTPAddr)
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

func (a *app) warnInsecure() {
	if len(a.cfg.APIKeys) == 0 {
		a.log.Warn("DAYBOOK_API_KEYS is unset: ingest accepts requests without an API key")
	}
	if a.cfg.HMACSecret == "" {
		a.log.Warn("DAYBOOK_HMAC_SECRET is unset: ingest does not check body signatures")
	}
	if a.cfg.AdminToken == "" {
		a.log.Warn("DAYBOOK_ADMIN_TOKEN is unset: admin routes are open")
	}
}

func (a *app) replayer() (*replay.Replayer, error) {
	pub, err := queue.NewRedisPublisher(a.redis, nil, nil)
	if err != nil {
		return nil, err
	}
	return replay.New(ingest.NewStore(a.pool), deadletter.NewStore(a.pool), queue.Sender{Pub: pub}, a.topics().Events()), nil
}

func (a *app) newHTTPServer() (*http.Server, error) {
	g, err := gate.New(a.redis, gate.Config{
		KeyPrefix: a.cfg.KeyPrefix, Stream: a.topics().Events(),
		RatePerSecond: a.cfg.RateLimit, IdempotencyTTL: a.cfg.IdempotencyTTL,
	})
	if err != nil {
		return nil, err
	}
	replayer, err := a.replayer()
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
	srv := api.New(api.Deps{
		Pool: a.pool, Redis: a.redis, Gate: g, Events: ingest.NewStore(a.pool), Dead: deadletter.NewStore(a.pool),
		Replayer: replayer, Ledger: book, Metrics: a.metrics, Logger: a.log,
	}, api.Config{APIKeys: a.cfg.APIKeys, AdminToken: a.cfg.AdminToken, HMACSecret: a.cfg.HMACSecret})
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

func (a *app) opsServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	return &http.Server{Addr: a.cfg.HTTPAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
}

func (a *app) newWorker() (*handlers.Worker, error) {
	store, err := archive.Open(a.cfg.ArchiveURL)
	if err != nil {
		return nil, err
	}
	if c, ok := store.(io.Closer); ok {
		a.closers = append(a.closers, c)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "daybook"
	}
	w := a.cfg.Worker
	return handlers.NewWorker(handlers.Deps{
		Pool: a.pool, RedisOptions: a.redisOpts, Redis: a.redis, Archive: store, Metrics: a.metrics, Logger: a.log,
	}, handlers.Config{
		Topics: a.topics(), Consumers: w.Consumers, ConsumerName: host,
		MaxAttempts: w.MaxAttempts, RetryBackoff: w.RetryBackoff, RetryBackoffMax: w.RetryBackoffMax,
		StuckAfter: w.StuckAfter, RescueInterval: w.RescueInterval, ClaimIdle: w.ClaimIdle,
		BreakerProbeInterval: w.BreakerProbeInterval, AttemptTimeout: w.AttemptTimeout,
		ShutdownTimeout: a.cfg.ShutdownTimeout, ReconcileInterval: w.ReconcileInterval,
	})
}
