package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/redisstream"
	"github.com/daybook/daybook/transport/sqs"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/internal/testmoto"
	"github.com/daybook/daybook/internal/testproxy"
	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/replay"
)

// harness runs a real worker against its own Postgres schema and Redis
// prefix. Durations are short so that retries and rescues happen in test time.
type harness struct {
	t          *testing.T
	pool       *pgxpool.Pool // direct, for assertions
	workerPool *pgxpool.Pool // what the worker uses (through proxy when asked)
	proxy      *testproxy.Proxy
	redis      *redis.Client
	topics     transport.Topics
	pub        message.Publisher
	archiveDir string
	metrics    *observability.Metrics
	cfg        Config
	// sqs, when set, carries the work topic and the event log (onSQS).
	sqs *sqs.Queues
	// trimInterval is the stream transport's (0: its default).
	trimInterval time.Duration
	events       *ingest.Store
	dead         *deadletter.Store

	cancel context.CancelFunc
	done   chan error
}

type harnessOption func(*harness)

// onSQS carries the work topic on SQS queues of the test's own, whose
// messages stay invisible for visibility once received.
func onSQS(visibility time.Duration) harnessOption {
	return func(h *harness) { h.sqs = testmoto.Open(h.t, visibility) }
}

// throughProxy makes the worker reach Postgres through a TCP proxy the test can cut.
func throughProxy(h *harness) { h.proxy = testproxy.New(h.t, "127.0.0.1:5432") }

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	pool, dbURL := testdb.NewWithURL(t)
	client, prefix := testredis.New(t)
	h := &harness{
		t: t, pool: pool, redis: client, topics: transport.Topics{Prefix: prefix},
		archiveDir: t.TempDir(), metrics: observability.NewMetrics(),
		events: ingest.NewStore(pool), dead: deadletter.NewStore(pool),
		cfg: Config{
			MaxAttempts:  5,
			RetryBackoff: 10 * time.Millisecond, RetryBackoffMax: 80 * time.Millisecond,
			StuckAfter: time.Second, RescueInterval: 100 * time.Millisecond,
			BreakerProbeInterval: 100 * time.Millisecond, AttemptTimeout: 2 * time.Second,
			ShutdownTimeout: 5 * time.Second, GaugeInterval: 100 * time.Millisecond,
		},
	}
	h.cfg.Topics = h.topics
	for _, o := range opts {
		o(h)
	}
	h.workerPool = pool
	if h.proxy != nil {
		u, err := url.Parse(dbURL)
		require.NoError(t, err)
		u.Host = h.proxy.Addr()
		pcfg, err := pgxpool.ParseConfig(u.String())
		require.NoError(t, err)
		pcfg.MaxConns = 10
		h.workerPool, err = pgxpool.NewWithConfig(context.Background(), pcfg)
		require.NoError(t, err)
		t.Cleanup(h.workerPool.Close)
	}
	if h.sqs != nil {
		tr := h.sqsTransport()
		t.Cleanup(func() { _ = tr.Close() })
		h.pub = tr.Publisher()
	} else {
		pub, err := redisstream.NewRedisPublisher(client, nil, nil)
		require.NoError(t, err)
		h.pub = pub
	}
	return h
}

// Consumers per worker, and how long an unacknowledged stream message waits
// before another consumer claims it.
const (
	harnessConsumers = 4
	harnessClaimIdle = 300 * time.Millisecond
)

// transports are a new worker's: the Redis streams, or SQS (onSQS).
func (h *harness) transports() (transport.Work, transport.EventLog) {
	h.t.Helper()
	if h.sqs != nil {
		tr := h.sqsTransport()
		return tr, tr
	}
	tr, err := redisstream.New(h.redis, redisstream.Config{
		Topics: h.topics, Name: "test", Consumers: harnessConsumers, ClaimIdle: harnessClaimIdle,
		GroupCheckInterval: h.cfg.GaugeInterval, TrimInterval: h.trimInterval,
	})
	require.NoError(h.t, err)
	return tr, tr
}

func (h *harness) sqsTransport() *sqs.Transport {
	h.t.Helper()
	tr, err := sqs.NewTransport(context.Background(), h.sqs, sqs.TransportConfig{Topics: h.topics, Consumers: harnessConsumers})
	require.NoError(h.t, err)
	return tr
}

func (h *harness) newWorker() *Worker {
	h.t.Helper()
	store, err := archive.NewFileStore(h.archiveDir)
	require.NoError(h.t, err)
	work, log := h.transports()
	w, err := NewWorker(Deps{
		Pool: h.workerPool, Work: work, Log: log, Redis: h.redis, Archive: store,
		Metrics: h.metrics, Logger: slog.New(slog.DiscardHandler),
	}, h.cfg)
	require.NoError(h.t, err)
	return w
}

// start runs a worker until stop (or the end of the test).
func (h *harness) start() {
	h.t.Helper()
	w := h.newWorker()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- w.Run(ctx) }()
	h.t.Cleanup(func() { _ = h.stop() })
}

// stop cancels the worker (as SIGTERM does) and waits for its drain.
func (h *harness) stop() error {
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		return err
	case <-time.After(h.cfg.ShutdownTimeout + 5*time.Second):
		return errors.New("worker did not stop")
	}
}

func (h *harness) newEvent(source string, payload string) ingest.Event {
	id, err := uuid.NewV7()
	require.NoError(h.t, err)
	return ingest.Event{
		ID: id, IdempotencyKey: "key-" + id.String(), Source: source, Type: "test.event",
		OrderID: "order-" + id.String()[:8], Payload: []byte(payload), ReceivedAt: time.Now().UTC(),
	}
}

func (h *harness) enqueue(e ingest.Event) {
	h.t.Helper()
	body, err := e.Encode()
	require.NoError(h.t, err)
	require.NoError(h.t, transport.Sender{Pub: h.pub}.Publish(context.Background(), h.topics.Events(), uuid.NewString(), body, nil))
}

func (h *harness) replayer() *replay.Replayer {
	return replay.New(h.events, h.dead, transport.Sender{Pub: h.pub}, h.topics.Events())
}

func (h *harness) waitStatus(id uuid.UUID, want ingest.Status, within time.Duration) ingest.Record {
	h.t.Helper()
	var rec ingest.Record
	require.Eventually(h.t, func() bool {
		var err error
		rec, err = h.events.Get(context.Background(), id)
		return err == nil && rec.Status == want
	}, within, 20*time.Millisecond, "event %s never reached %s (last: %+v)", id, want, rec.Status)
	return rec
}

func (h *harness) logRows(id uuid.UUID) int {
	h.t.Helper()
	var n int
	require.NoError(h.t, h.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM event_log WHERE stream_id = $1`, "ingest-"+id.String()).Scan(&n))
	return n
}

func (h *harness) processed(status string) float64 {
	return testutil.ToFloat64(h.metrics.EventsProcessed.WithLabelValues(status))
}

// breakArchive makes every archive write fail (a regular file where the
// segments directory must go); fixArchive undoes it.
func (h *harness) breakArchive() {
	h.t.Helper()
	segments := filepath.Join(h.archiveDir, "segments")
	require.NoError(h.t, os.RemoveAll(segments))
	require.NoError(h.t, os.WriteFile(segments, []byte("not a directory"), 0o600))
}

func (h *harness) fixArchive() {
	h.t.Helper()
	require.NoError(h.t, os.Remove(filepath.Join(h.archiveDir, "segments")))
}
