package sqs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/daybook/daybook/breaker"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/redisstream"

	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/internal/testmoto"
	"github.com/daybook/daybook/internal/testproxy"
	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/transport/sqs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig is an Intake on a fresh schema, Redis prefix (behind a proxy that the
// test can cut) and SQS queue of the test's own.
type rig struct {
	intake  *sqs.Admitter
	gate    *redisstream.Gate
	pool    *pgxpool.Pool
	proxy   *testproxy.Proxy
	sqs     *sqs.Queues
	pub     message.Publisher
	mu      sync.Mutex
	client  *redis.Client // through the proxy
	failed  []int         // events reported to OnFailOpen, per call
	release []error
}

func newRig(t *testing.T, topic string, options ...func(*rig, *sqs.AdmitConfig)) *rig {
	t.Helper()
	r := &rig{pool: testdb.New(t), sqs: testmoto.Open(t, 0)}
	_, prefix := testredis.New(t)
	client, proxy := testredis.Proxied(t)
	r.proxy = proxy
	var err error
	r.gate, err = redisstream.NewGate(client, redisstream.GateConfig{KeyPrefix: prefix, Stream: prefix + "unused", RatePerSecond: 0.001, Burst: 10})
	require.NoError(t, err)
	r.pub, err = r.sqs.NewPublisher(nil)
	require.NoError(t, err)
	if topic == "" {
		topic = r.sqs.Queue()
	}
	cfg := sqs.AdmitConfig{
		Topic: topic,
		OnFailOpen: func(n int, cause error) {
			require.ErrorIs(t, cause, redisstream.ErrRedis)
			r.mu.Lock()
			r.failed = append(r.failed, n)
			r.mu.Unlock()
		},
		OnReleaseError: func(err error) { r.mu.Lock(); r.release = append(r.release, err); r.mu.Unlock() },
	}
	r.client = client
	for _, o := range options {
		o(r, &cfg)
	}
	r.intake, err = sqs.NewAdmitter(r.gate, r.pub, ingest.NewStore(r.pool), cfg)
	require.NoError(t, err)
	return r
}

func admission(key string) transport.Admission {
	id := uuid.NewString()
	return transport.Admission{
		ClientID: "client-1", IdempotencyKey: key, EventID: id, MessageUUID: uuid.NewString(),
		Payload: []byte(`{"id":"` + id + `"}`), MetadataJSON: `{"correlation_id":"c-` + key + `"}`,
		Pending: map[string]string{"idempotency_key": key},
	}
}

// drain receives every message on the queue until it stays empty for a few seconds.
func (r *rig) drain(t *testing.T) []*message.Message {
	t.Helper()
	sub, err := r.sqs.NewSubscriber(r.sqs.Queue(), 4, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, sub.Close()) }()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	msgs, err := sub.Subscribe(ctx, r.sqs.Queue())
	require.NoError(t, err)
	var got []*message.Message
	for {
		select {
		case m := <-msgs:
			m.Ack()
			got = append(got, m)
		case <-time.After(3 * time.Second):
			return got
		}
	}
}

func TestAdmitBatch_ReservesInRedisAndSendsToSQS(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	first, repeat, other := admission("k-1"), admission("k-1"), admission("k-2")

	results, err := r.intake.AdmitBatch(ctx, []transport.Admission{first, repeat, other})
	require.NoError(t, err)
	require.Equal(t, []transport.Outcome{transport.Accepted, transport.Duplicate, transport.Accepted},
		[]transport.Outcome{results[0].Outcome, results[1].Outcome, results[2].Outcome})
	require.Equal(t, first.EventID, results[1].EventID)

	res, err := r.intake.Admit(ctx, admission("k-2"))
	require.NoError(t, err)
	require.Equal(t, transport.Result{Outcome: transport.Duplicate, EventID: other.EventID}, res, "Redis remembers the key")
	_, ok, err := r.intake.Pending(ctx, first.EventID)
	require.NoError(t, err)
	require.True(t, ok)

	got := r.drain(t)
	byUUID := map[string]*message.Message{}
	for _, m := range got {
		byUUID[m.UUID] = m
	}
	require.Len(t, byUUID, 2)
	require.Equal(t, string(first.Payload), string(byUUID[first.MessageUUID].Payload))
	require.Equal(t, "c-k-1", byUUID[first.MessageUUID].Metadata.Get("correlation_id"))
	require.Equal(t, string(other.Payload), string(byUUID[other.MessageUUID].Payload))
	require.Empty(t, r.failed, "Redis answered: nothing failed open")
}

func TestAdmitBatch_RedisDownFailsOpenAndPostgresAnswersStoredKeys(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	storedID := uuid.Must(uuid.NewV7())
	_, err := r.pool.Exec(ctx, `INSERT INTO ingestion_events (id, idempotency_key, source, type, payload, received_at)
		VALUES ($1, 'k-stored', 'tests', 'raw', '{}', now())`, storedID)
	require.NoError(t, err)

	// The client has spent its whole burst: with Redis up it is rate limited.
	fillers := make([]transport.Admission, 10)
	for i := range fillers {
		fillers[i] = admission("k-filler-" + string(rune('a'+i)))
	}
	_, err = r.intake.AdmitBatch(ctx, fillers)
	require.NoError(t, err)
	res, err := r.intake.Admit(ctx, admission("k-limited"))
	require.NoError(t, err)
	require.Equal(t, transport.RateLimited, res.Outcome)

	r.proxy.Cut()
	fresh, repeat, stored := admission("k-new"), admission("k-new"), admission("k-stored")
	results, err := r.intake.AdmitBatch(ctx, []transport.Admission{fresh, repeat, stored})
	require.NoError(t, err)
	require.Equal(t, []transport.Result{
		{Outcome: transport.Accepted, EventID: fresh.EventID, MessageID: fresh.EventID},
		{Outcome: transport.Duplicate, EventID: fresh.EventID},
		{Outcome: transport.Duplicate, EventID: storedID.String()},
	}, results, "no rate limit without Redis; duplicates answered from the batch and from Postgres")
	require.Equal(t, []int{3}, r.failed)

	got := r.drain(t)
	require.Len(t, got, 11, "the ten fillers and the new key once; no duplicate sent")
}

func TestAdmitBatch_RedisAndPostgresDownStillAccepts(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	r.proxy.Cut()
	r.pool.Close() // the key lookup fails too: the worker's UNIQUE constraint is the guard

	res, err := r.intake.Admit(t.Context(), admission("k-1"))
	require.NoError(t, err)
	require.Equal(t, transport.Accepted, res.Outcome)
	require.Len(t, r.drain(t), 1)
}

func TestAdmitBatch_SQSRefusalReleasesTheReservation(t *testing.T) {
	t.Parallel()
	r := newRig(t, "daybook-test-no-such-queue")
	ctx := t.Context()
	a := admission("k-1")

	_, err := r.intake.Admit(ctx, a)
	require.ErrorIs(t, err, transport.ErrEnqueue)
	results, err := r.intake.AdmitBatch(ctx, []transport.Admission{admission("k-2")})
	require.ErrorIs(t, err, transport.ErrEnqueue)
	require.Equal(t, []transport.Result{{Outcome: transport.NotAdmitted}}, results)

	// Nothing of either event is left: the keys are free, no pending marker.
	for _, key := range []string{"k-1", "k-2"} {
		_, ok, err := r.gate.Lookup(ctx, key)
		require.NoError(t, err)
		require.False(t, ok, key)
	}
	_, ok, err := r.intake.Pending(ctx, a.EventID)
	require.NoError(t, err)
	require.False(t, ok)
	require.Empty(t, r.release)
}

func TestAdmitBatch_InvalidAdmissionIsAnErrorNotFailOpen(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	bad := admission("k-1")
	bad.EventID = ""
	_, err := r.intake.Admit(t.Context(), bad)
	require.ErrorContains(t, err, "event id is required")
	require.False(t, errors.Is(err, redisstream.ErrRedis))
	require.Empty(t, r.failed)
}

func TestAdmit_RedisBreakerSkipsRedisWhileDownAndResumesWhenBack(t *testing.T) {
	t.Parallel()
	var b *breaker.Breaker
	r := newRig(t, "", func(r *rig, cfg *sqs.AdmitConfig) {
		var err error
		b, err = breaker.New(breaker.Config{
			Probe:         func(ctx context.Context) error { return r.client.Ping(ctx).Err() },
			ProbeInterval: 50 * time.Millisecond,
		})
		require.NoError(t, err)
		t.Cleanup(b.Close)
		cfg.RedisBreaker = b
	})
	ctx := t.Context()

	r.proxy.Cut()
	_, err := r.intake.Admit(ctx, admission("k-down-1"))
	require.NoError(t, err)
	require.Equal(t, breaker.Open, b.State(), "the failure's probe confirmed the outage")
	_, err = r.intake.Admit(ctx, admission("k-down-2"))
	require.NoError(t, err)
	require.Equal(t, []int{1, 1}, r.failed, "both admitted without Redis")

	r.proxy.Restore()
	require.Eventually(t, func() bool { return b.State() == breaker.Closed }, 5*time.Second, 10*time.Millisecond)
	up := admission("k-up")
	res, err := r.intake.Admit(ctx, up)
	require.NoError(t, err)
	require.Equal(t, transport.Accepted, res.Outcome)
	owner, ok, err := r.gate.Lookup(ctx, "k-up")
	require.NoError(t, err)
	require.True(t, ok, "Redis is used again once it answers")
	require.Equal(t, up.EventID, owner)
	require.Len(t, r.failed, 2)
	require.Len(t, r.drain(t), 3)
}
