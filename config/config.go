// Package config reads Daybook's settings from the environment. It owns the
// names and defaults of every DAYBOOK_* variable and nothing else.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Authentication modes (DAYBOOK_AUTH).
const (
	AuthKeys = "keys"
	AuthOff  = "off"
)

// Queue transports.
const (
	QueueRedis = "redis"
	QueueSQS   = "sqs"
)

// Config is the whole service configuration. Zero durations mean "use the default".
type Config struct {
	DatabaseURL string
	RedisURL    string
	HTTPAddr    string
	// WorkerAddr is where `daybook worker` serves /health and /metrics.
	WorkerAddr string
	Queue      string
	ArchiveURL string

	// Auth is AuthKeys (keys required as soon as one exists; with none the API
	// serves a loopback address only) or AuthOff (no authentication anywhere).
	Auth string
	// BootstrapKey, when set, is stored (hashed) as a key at start, with
	// BootstrapScopes: how compose and Terraform users get their first key.
	BootstrapKey    string
	BootstrapScopes string
	// WebhookSecret (whsec_<base64>, comma-separated to rotate) makes ingest
	// require Standard Webhooks signatures.
	WebhookSecret string

	// RateLimit is requests (events) per second per client; the burst equals it. 0 = off.
	RateLimit float64
	// IdempotencyTTL is how long the Redis fast path remembers a key.
	IdempotencyTTL time.Duration
	// KeyPrefix namespaces every Redis key and stream (tests use their own).
	KeyPrefix string

	LedgerLock string

	Worker Worker
	SQS    SQS

	// ShutdownTimeout bounds the drain after SIGTERM.
	ShutdownTimeout time.Duration
	LogLevel        string
}

// Worker holds the settings of the queue consumers.
type Worker struct {
	// Consumers is how many stream consumers run in parallel in one process;
	// each reads Batch entries per round trip and holds up to InFlight.
	Consumers int
	Batch     int
	InFlight  int
	// Dedup runs the Redis dedup middleware (a pipelined check before and a
	// record after each message); off, redeliveries are caught by Postgres.
	Dedup bool
	// MaxAttempts is how many times an event is tried before it is dead-lettered.
	MaxAttempts int
	// RetryBackoff is the first retry delay; it doubles up to RetryBackoffMax.
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	// StuckAfter is how long an event may stay PROCESSING (or PENDING without progress) before the rescuer re-enqueues it.
	StuckAfter time.Duration
	// RescueInterval is how often the rescuer looks.
	RescueInterval time.Duration
	// ClaimIdle is how long a delivered, unacknowledged message waits before another consumer claims it.
	ClaimIdle time.Duration
	// BreakerProbeInterval is how often an open circuit breaker checks Postgres.
	BreakerProbeInterval time.Duration
	// AttemptTimeout bounds one processing attempt.
	AttemptTimeout time.Duration
	// ReconcileInterval is how often the worker reconciles the ledger.
	ReconcileInterval time.Duration
}

// SQS holds the settings of the SQS transport (DAYBOOK_QUEUE=sqs). The
// region, credentials and endpoint come from the AWS SDK's own variables
// (AWS_REGION, AWS_ENDPOINT_URL, ...).
type SQS struct {
	Queue     string
	DeadQueue string
	// VisibilityTimeout is how long a received message stays invisible; the
	// worker extends it while handling, so it only delays redelivery after a crash.
	VisibilityTimeout time.Duration
	// Consumers is how many receive loops one worker process runs.
	Consumers int
	// CreateQueues creates missing queues and the log topic (emulators);
	// Terraform owns them in AWS.
	CreateQueues bool
	// LogTopic is the SNS topic of the event log; LogTopicARN its ARN
	// (Terraform's output), looked up by name when unset.
	LogTopic    string
	LogTopicARN string
}

// Load reads the configuration through getenv (os.Getenv in production).
func Load(getenv func(string) string) (Config, error) {
	env := func(name, fallback string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return fallback
	}
	var errs []error
	duration := func(name string, fallback time.Duration) time.Duration {
		v := getenv(name)
		if v == "" {
			return fallback
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive duration such as 30s", name, v))
			return fallback
		}
		return d
	}
	integer := func(name string, fallback int) int {
		v := getenv(name)
		if v == "" {
			return fallback
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive integer", name, v))
			return fallback
		}
		return n
	}

	boolean := func(name string) bool {
		v := getenv(name)
		if v == "" {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want true or false", name, v))
		}
		return b
	}

	cfg := Config{
		DatabaseURL:     env("DATABASE_URL", "postgres://postgres@localhost:5432/daybook?sslmode=disable"),
		RedisURL:        env("REDIS_URL", "redis://localhost:6379/0"),
		HTTPAddr:        env("DAYBOOK_HTTP_ADDR", "127.0.0.1:8080"),
		WorkerAddr:      env("DAYBOOK_WORKER_ADDR", "127.0.0.1:8081"),
		Auth:            env("DAYBOOK_AUTH", AuthKeys),
		BootstrapKey:    strings.TrimSpace(getenv("DAYBOOK_BOOTSTRAP_KEY")),
		BootstrapScopes: env("DAYBOOK_BOOTSTRAP_SCOPES", "events:write,events:read,ledger:read,ledger:write,admin"),
		WebhookSecret:   strings.TrimSpace(getenv("DAYBOOK_WEBHOOK_SECRET")),
		Queue:           env("DAYBOOK_QUEUE", QueueRedis),
		ArchiveURL:      env("DAYBOOK_ARCHIVE_URL", "file://./var/archive"),
		IdempotencyTTL:  duration("DAYBOOK_IDEMPOTENCY_TTL", 24*time.Hour),
		KeyPrefix:       getenv("DAYBOOK_REDIS_PREFIX"),
		LedgerLock:      env("DAYBOOK_LEDGER_LOCK", "postgres"),
		ShutdownTimeout: duration("DAYBOOK_SHUTDOWN_TIMEOUT", 10*time.Second),
		LogLevel:        env("DAYBOOK_LOG_LEVEL", "info"),
		Worker: Worker{
			Consumers:            integer("DAYBOOK_WORKER_CONSUMERS", 2),
			Batch:                integer("DAYBOOK_WORKER_BATCH", 256),
			InFlight:             integer("DAYBOOK_WORKER_IN_FLIGHT", 512),
			Dedup:                env("DAYBOOK_WORKER_DEDUP", "on") != "off",
			MaxAttempts:          integer("DAYBOOK_MAX_ATTEMPTS", 5),
			RetryBackoff:         duration("DAYBOOK_RETRY_BACKOFF", time.Second),
			RetryBackoffMax:      duration("DAYBOOK_RETRY_BACKOFF_MAX", 8*time.Second),
			StuckAfter:           duration("DAYBOOK_STUCK_AFTER", 30*time.Second),
			RescueInterval:       duration("DAYBOOK_RESCUE_INTERVAL", 5*time.Second),
			ClaimIdle:            duration("DAYBOOK_CLAIM_IDLE", 60*time.Second),
			BreakerProbeInterval: duration("DAYBOOK_BREAKER_PROBE_INTERVAL", 30*time.Second),
			AttemptTimeout:       duration("DAYBOOK_ATTEMPT_TIMEOUT", 5*time.Second),
			ReconcileInterval:    duration("DAYBOOK_RECONCILE_INTERVAL", 24*time.Hour),
		},
		SQS: SQS{
			Queue:             env("DAYBOOK_SQS_QUEUE", "daybook-events"),
			DeadQueue:         env("DAYBOOK_SQS_DLQ", "daybook-events-dlq"),
			VisibilityTimeout: duration("DAYBOOK_SQS_VISIBILITY_TIMEOUT", 30*time.Second),
			Consumers:         integer("DAYBOOK_SQS_CONSUMERS", 8),
			CreateQueues:      boolean("DAYBOOK_SQS_CREATE_QUEUES"),
			LogTopic:          env("DAYBOOK_SNS_LOG_TOPIC", "daybook-log"),
			LogTopicARN:       env("DAYBOOK_SNS_LOG_TOPIC_ARN", ""),
		},
	}

	// Settings that no longer exist must not be ignored quietly: a deployment
	// that set them expects a check that would silently be gone.
	for old, now := range map[string]string{ //nolint:gosec // G101: names of settings, not credentials
		"DAYBOOK_API_KEYS":    "API keys in Postgres (daybook keys create, or DAYBOOK_BOOTSTRAP_KEY)",
		"DAYBOOK_ADMIN_TOKEN": "a key with the admin scope (daybook keys create --scopes admin, or DAYBOOK_BOOTSTRAP_KEY)",
		"DAYBOOK_HMAC_SECRET": "DAYBOOK_WEBHOOK_SECRET (Standard Webhooks signatures)",
	} {
		if getenv(old) != "" {
			errs = append(errs, fmt.Errorf("%s is no longer read: it is replaced by %s", old, now))
		}
	}

	rate := env("DAYBOOK_RATE_LIMIT", "1000")
	r, err := strconv.ParseFloat(rate, 64)
	if err != nil || r < 0 {
		errs = append(errs, fmt.Errorf("DAYBOOK_RATE_LIMIT=%q: want a number of requests per second (0 = off)", rate))
	}
	cfg.RateLimit = r

	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	return cfg, errors.Join(errs...)
}

// FromEnv reads the process environment.
func FromEnv() (Config, error) { return Load(os.Getenv) }

// Validate reports settings that cannot work together.
func (c Config) Validate() error {
	var errs []error
	if c.Auth != AuthKeys && c.Auth != AuthOff {
		errs = append(errs, fmt.Errorf("DAYBOOK_AUTH=%q: want %q (the default) or %q", c.Auth, AuthKeys, AuthOff))
	}
	if c.Queue != QueueRedis && c.Queue != QueueSQS {
		errs = append(errs, fmt.Errorf("DAYBOOK_QUEUE=%q: want %q or %q", c.Queue, QueueRedis, QueueSQS))
	}
	if c.LedgerLock != "postgres" && c.LedgerLock != "redis" {
		errs = append(errs, fmt.Errorf("DAYBOOK_LEDGER_LOCK=%q: want postgres or redis", c.LedgerLock))
	}
	if c.Worker.Consumers < 1 || c.Worker.Batch < 1 || c.Worker.InFlight < c.Worker.Batch {
		errs = append(errs, fmt.Errorf("DAYBOOK_WORKER_CONSUMERS (%d) and DAYBOOK_WORKER_BATCH (%d) must be positive, DAYBOOK_WORKER_IN_FLIGHT (%d) at least the batch",
			c.Worker.Consumers, c.Worker.Batch, c.Worker.InFlight))
	}
	if c.Worker.RetryBackoffMax < c.Worker.RetryBackoff {
		errs = append(errs, errors.New("DAYBOOK_RETRY_BACKOFF_MAX must not be below DAYBOOK_RETRY_BACKOFF"))
	}
	if c.Worker.StuckAfter <= c.Worker.AttemptTimeout {
		// An attempt still running must never be taken for a stuck one.
		errs = append(errs, errors.New("DAYBOOK_STUCK_AFTER must exceed DAYBOOK_ATTEMPT_TIMEOUT"))
	}
	if worst := c.Worker.WorstCaseHandling(); c.Worker.ClaimIdle <= worst {
		// Another process would claim a message its owner is still retrying.
		errs = append(errs, fmt.Errorf("DAYBOOK_CLAIM_IDLE (%s) must exceed the longest a message can be handled: %d attempts x DAYBOOK_ATTEMPT_TIMEOUT + backoffs = %s",
			c.Worker.ClaimIdle, c.Worker.MaxAttempts, worst))
	}
	return errors.Join(errs...)
}

// WorstCaseHandling is the longest one message can stay with its consumer:
// every attempt timing out, with every backoff between them.
func (w Worker) WorstCaseHandling() time.Duration {
	total := time.Duration(w.MaxAttempts) * w.AttemptTimeout
	delay := w.RetryBackoff
	for range w.MaxAttempts - 1 {
		total += min(delay, w.RetryBackoffMax)
		delay *= 2
	}
	return total
}
