package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoad_DefaultsMatchDesign(t *testing.T) {
	t.Parallel()
	cfg, err := Load(envOf(nil))
	require.NoError(t, err)
	require.Equal(t, "postgres://postgres@localhost:5432/daybook?sslmode=disable", cfg.DatabaseURL)
	require.Equal(t, "redis://localhost:6379/0", cfg.RedisURL)
	require.Equal(t, "127.0.0.1:8080", cfg.HTTPAddr, "secure by default: loopback until keys or DAYBOOK_AUTH=off say otherwise")
	require.Equal(t, "127.0.0.1:8081", cfg.WorkerAddr)
	require.Equal(t, AuthKeys, cfg.Auth)
	require.Empty(t, cfg.BootstrapKey)
	require.Equal(t, "events:write,events:read,ledger:read,ledger:write,admin", cfg.BootstrapScopes)
	require.Empty(t, cfg.WebhookSecret)
	require.Equal(t, QueueRedis, cfg.Queue)
	require.Equal(t, "file://./var/archive", cfg.ArchiveURL)
	require.Equal(t, 1000.0, cfg.RateLimit)
	require.Equal(t, "postgres", cfg.LedgerLock)
	require.Equal(t, 24*time.Hour, cfg.IdempotencyTTL)
	require.Equal(t, 2, cfg.Worker.Consumers)
	require.Equal(t, 256, cfg.Worker.Batch)
	require.Equal(t, 512, cfg.Worker.InFlight)
	require.True(t, cfg.Worker.Dedup)
	require.Equal(t, 5, cfg.Worker.MaxAttempts)
	require.Equal(t, time.Second, cfg.Worker.RetryBackoff)
	require.Equal(t, 8*time.Second, cfg.Worker.RetryBackoffMax)
	require.Equal(t, 30*time.Second, cfg.Worker.StuckAfter)
	require.Equal(t, 30*time.Second, cfg.Worker.BreakerProbeInterval)
	require.Equal(t, 10*time.Second, cfg.ShutdownTimeout)
	require.Equal(t, SQS{
		Queue: "daybook-events", DeadQueue: "daybook-events-dlq", VisibilityTimeout: 30 * time.Second, Consumers: 8,
		LogTopic: "daybook-log",
	}, cfg.SQS)
}

func TestLoad_SQSSettings(t *testing.T) {
	t.Parallel()
	cfg, err := Load(envOf(map[string]string{
		"DAYBOOK_QUEUE": "sqs", "DAYBOOK_SQS_QUEUE": "q", "DAYBOOK_SQS_DLQ": "q-dlq",
		"DAYBOOK_SQS_VISIBILITY_TIMEOUT": "45s", "DAYBOOK_SQS_CONSUMERS": "8", "DAYBOOK_SQS_CREATE_QUEUES": "true",
		"DAYBOOK_SNS_LOG_TOPIC": "log", "DAYBOOK_SNS_LOG_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:log",
	}))
	require.NoError(t, err)
	require.Equal(t, QueueSQS, cfg.Queue)
	require.Equal(t, SQS{
		Queue: "q", DeadQueue: "q-dlq", VisibilityTimeout: 45 * time.Second, Consumers: 8, CreateQueues: true,
		LogTopic: "log", LogTopicARN: "arn:aws:sns:eu-west-1:123456789012:log",
	}, cfg.SQS)
}

func TestLoad_SecuritySettings(t *testing.T) {
	t.Parallel()
	cfg, err := Load(envOf(map[string]string{
		"DAYBOOK_AUTH": "off", "DAYBOOK_BOOTSTRAP_KEY": " boot-key ", "DAYBOOK_BOOTSTRAP_SCOPES": "events:write",
		"DAYBOOK_WEBHOOK_SECRET": " whsec_a,whsec_b ", "DAYBOOK_RATE_LIMIT": "0",
	}))
	require.NoError(t, err)
	require.Equal(t, AuthOff, cfg.Auth)
	require.Equal(t, "boot-key", cfg.BootstrapKey)
	require.Equal(t, "events:write", cfg.BootstrapScopes)
	require.Equal(t, "whsec_a,whsec_b", cfg.WebhookSecret)
	require.Zero(t, cfg.RateLimit)
}

func TestLoad_RefusesTheReplacedSecuritySettingsNamingTheirSuccessors(t *testing.T) {
	t.Parallel()
	_, err := Load(envOf(map[string]string{
		"DAYBOOK_API_KEYS": "k", "DAYBOOK_ADMIN_TOKEN": "t", "DAYBOOK_HMAC_SECRET": "s", "DAYBOOK_AUTH": "maybe",
	}))
	require.Error(t, err)
	for _, want := range []string{"DAYBOOK_API_KEYS", "DAYBOOK_ADMIN_TOKEN", "DAYBOOK_HMAC_SECRET", "DAYBOOK_WEBHOOK_SECRET", "DAYBOOK_BOOTSTRAP_KEY", `DAYBOOK_AUTH="maybe"`} {
		require.Contains(t, err.Error(), want)
	}
}

func TestLoad_RejectsBadValuesNamingTheVariable(t *testing.T) {
	t.Parallel()
	_, err := Load(envOf(map[string]string{
		"DAYBOOK_QUEUE":             "kafka",
		"DAYBOOK_RATE_LIMIT":        "fast",
		"DAYBOOK_STUCK_AFTER":       "-1s",
		"DAYBOOK_WORKER_CONSUMERS":  "0",
		"DAYBOOK_SQS_CREATE_QUEUES": "maybe",
	}))
	require.Error(t, err)
	for _, name := range []string{"DAYBOOK_QUEUE", "DAYBOOK_RATE_LIMIT", "DAYBOOK_STUCK_AFTER", "DAYBOOK_WORKER_CONSUMERS", "DAYBOOK_SQS_CREATE_QUEUES"} {
		require.Contains(t, err.Error(), name)
	}
}
