package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/redisstream"
	"github.com/daybook/daybook/transport/sqs"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/api"
	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/openapitest"
	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/internal/testmoto"
	"github.com/daybook/daybook/internal/testproxy"
	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/replay"
	"github.com/daybook/daybook/webhook"
)

// testServer is the whole API on real Postgres (a schema of its own) and real
// Redis (a key prefix of its own). No worker runs: what the API enqueues stays
// on the stream, where the tests count it.
type testServer struct {
	t       *testing.T
	url     string
	client  *http.Client
	pool    *pgxpool.Pool
	redis   *redis.Client
	prefix  string
	stream  string
	events  *ingest.Store
	dead    *deadletter.Store
	metrics *observability.Metrics
	// keys stores API keys; keyring is what the server authenticates against.
	keys    *apikey.Store
	keyring *apikey.Keyring
	// archive is the file archive GET /events/{id}/payload reads.
	archive *archive.FileStore
}

// serverSetup is what a test may change before the server is built.
type serverSetup struct {
	api        api.Config
	gate       redisstream.GateConfig
	queueReady func(context.Context) error
	ledgerLock string
	// sqs, when set, makes the server ingest onto SQS through an intake whose
	// Redis client goes through a proxy the test can cut.
	sqs         *sqs.Queues
	redisClient *redis.Client
}

type serverOption func(*serverSetup)

func withLedgerLock(strategy string) serverOption {
	return func(s *serverSetup) { s.ledgerLock = strategy }
}

// withWebhookSecret requires Standard Webhooks signatures under secrets
// (comma-separated whsec_ values), with the verifier's clock at now.
func withWebhookSecret(t *testing.T, secrets string, now func() time.Time) serverOption {
	v, err := webhook.NewVerifier(secrets, now)
	require.NoError(t, err)
	return func(s *serverSetup) { s.api.Webhook = v }
}

func withAuthOff() serverOption {
	return func(s *serverSetup) { s.api.Auth = api.AuthOff }
}

func withRate(perSecond float64) serverOption {
	return func(s *serverSetup) { s.gate.RatePerSecond = perSecond }
}

func withQueueReady(check func(context.Context) error) serverOption {
	return func(s *serverSetup) { s.queueReady = check }
}

// withSQS ingests onto SQS queues of the test's own, with Redis behind a
// proxy that the test cuts to make Redis unreachable.
func withSQS(t *testing.T) (serverOption, *testproxy.Proxy) {
	client, proxy := testredis.Proxied(t)
	s := testmoto.Open(t, 0)
	return func(setup *serverSetup) { setup.sqs, setup.redisClient = s, client }, proxy
}

func newServer(t *testing.T, opts ...serverOption) *testServer {
	t.Helper()
	pool := testdb.New(t)
	client, prefix := testredis.New(t)
	var setup serverSetup
	for _, o := range opts {
		o(&setup)
	}
	stream := prefix + transport.EventsTopic
	setup.gate.KeyPrefix, setup.gate.Stream = prefix, stream
	g, err := redisstream.NewGate(client, setup.gate)
	require.NoError(t, err)
	// The publisher is not closed: its Close closes the shared client, which
	// testredis closes itself after deleting the test's keys.
	pub, err := redisstream.NewRedisPublisher(client, nil, nil)
	require.NoError(t, err)

	events, dead := ingest.NewStore(pool), deadletter.NewStore(pool)
	metrics := observability.NewMetrics()
	var admitter transport.Admitter = g
	serverRedis := redis.UniversalClient(client)
	if setup.sqs != nil {
		proxied := setup.redisClient
		pg, err := redisstream.NewGate(proxied, setup.gate)
		require.NoError(t, err)
		sqsPub, err := setup.sqs.NewPublisher(nil)
		require.NoError(t, err)
		tr, err := sqs.NewTransport(t.Context(), setup.sqs, sqs.TransportConfig{Topics: transport.Topics{Prefix: prefix}, Consumers: 1})
		require.NoError(t, err)
		t.Cleanup(func() { _ = tr.Close() })
		pub = tr.Publisher()
		admitter, err = sqs.NewAdmitter(pg, sqsPub, events, sqs.AdmitConfig{
			Topic:      setup.sqs.Queue(),
			OnFailOpen: func(n int, _ error) { metrics.RedisFailOpen.WithLabelValues("ingest").Add(float64(n)) },
		})
		require.NoError(t, err)
		serverRedis = proxied
	}
	book, err := ledger.NewService(pool, ledger.Config{
		Lock: setup.ledgerLock, Redis: client, KeyPrefix: prefix,
		OnRetry: func(reason string) { metrics.LedgerTxRetries.WithLabelValues(reason).Inc() },
	})
	require.NoError(t, err)
	keys := apikey.NewStore(pool)
	keyring, err := apikey.NewKeyring(keys, apikey.KeyringConfig{Refresh: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, keyring.Start(t.Context()))
	t.Cleanup(keyring.Stop)
	setup.api.Keys = keyring
	archiveStore, err := archive.NewFileStore(t.TempDir())
	require.NoError(t, err)
	srv := api.New(api.Deps{
		Pool: pool, Redis: serverRedis, RedisOptional: setup.sqs != nil, Gate: admitter, Events: events, Dead: dead, Ledger: book,
		Replayer: replay.New(events, dead, transport.Sender{Pub: pub}, stream),
		Metrics:  metrics, Logger: slog.New(slog.DiscardHandler), QueueReady: setup.queueReady, Archive: archiveStore,
	}, setup.api)
	hs := httptest.NewServer(srv.Handler())
	// Registered after testdb and testredis, so it runs before them: no
	// request is in flight when the pool and the client close.
	t.Cleanup(hs.Close)
	return &testServer{
		t: t, url: hs.URL, client: openapitest.Client(t, hs.Client()), pool: pool, redis: client, prefix: prefix, stream: stream,
		events: events, dead: dead, metrics: metrics, keys: keys, keyring: keyring, archive: archiveStore,
	}
}

// newKey creates an API key with scopes and makes the server know it at
// once; it returns the secret key.
func (s *testServer) newKey(scopes ...string) string {
	s.t.Helper()
	_, secret, err := s.keys.Create(s.t.Context(), apikey.CreateParams{Name: "test", Scopes: scopes})
	require.NoError(s.t, err)
	require.NoError(s.t, s.keyring.Refresh(s.t.Context()))
	return secret
}

// bearer is the header pair that sends key.
func bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }

// reply is one HTTP answer, read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; header pairs are name, value, name, value...
func (s *testServer) do(method, path string, body []byte, header ...string) reply {
	s.t.Helper()
	require.Zero(s.t, len(header)%2, "header needs name/value pairs")
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(s.t.Context(), method, s.url+path, rd)
	require.NoError(s.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.client.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (s *testServer) ingest(body string, header ...string) reply {
	s.t.Helper()
	return s.do(http.MethodPost, "/events/ingest", []byte(body), header...)
}

func (s *testServer) get(path string, header ...string) reply {
	s.t.Helper()
	return s.do(http.MethodGet, path, nil, header...)
}

// xlen is the number of entries on the work stream.
func (s *testServer) xlen() int64 {
	s.t.Helper()
	n, err := s.redis.XLen(context.Background(), s.stream).Result()
	require.NoError(s.t, err)
	return n
}

// idem returns the event id an idempotency key maps to in Redis; ok is false
// when the key is free.
func (s *testServer) idem(key string) (string, bool) {
	s.t.Helper()
	id, err := s.redis.Get(context.Background(), s.prefix+"idem:"+key).Result()
	if errors.Is(err, redis.Nil) {
		return "", false
	}
	require.NoError(s.t, err)
	return id, true
}

// streamEvents decodes every event on the work stream, oldest first.
func (s *testServer) streamEvents() []ingest.Event {
	s.t.Helper()
	entries, err := s.redis.XRange(context.Background(), s.stream, "-", "+").Result()
	require.NoError(s.t, err)
	out := make([]ingest.Event, len(entries))
	for i, e := range entries {
		payload, ok := e.Values[redisstream.FieldPayload].(string)
		require.True(s.t, ok, "entry %s has no payload", e.ID)
		out[i], err = ingest.Decode([]byte(payload))
		require.NoError(s.t, err)
	}
	return out
}

// storeEvent writes an event row the way the worker's first step does
// (ingest.Store.Claim): the row is PROCESSING with one attempt.
func (s *testServer) storeEvent(key string) ingest.Record {
	s.t.Helper()
	id, err := uuid.NewV7()
	require.NoError(s.t, err)
	return s.storeEventWithID(id, key)
}

func (s *testServer) storeEventWithID(id uuid.UUID, key string) ingest.Record {
	s.t.Helper()
	outcome, rec, err := s.events.Claim(context.Background(), ingest.Event{
		ID: id, IdempotencyKey: key, Source: "order_updates", Type: "order.updated", OrderID: "o-1",
		Payload: json.RawMessage(`{"status":"paid"}`), ReceivedAt: time.Now().UTC(), CorrelationID: "corr-" + key,
	})
	require.NoError(s.t, err)
	require.Equal(s.t, ingest.Claimed, outcome)
	require.Equal(s.t, ingest.StatusProcessing, rec.Status)
	return rec
}

// failEvent moves a claimed event to FAILED, as the worker does for good.
func (s *testServer) failEvent(rec ingest.Record, reason string) {
	s.t.Helper()
	ok, err := s.events.Fail(context.Background(), ingest.FinishAttemptParams{ID: rec.ID, Attempts: rec.Attempts, Error: reason})
	require.NoError(s.t, err)
	require.True(s.t, ok)
}

// completeEvent moves a claimed event to COMPLETED inside a transaction, as the worker does.
func (s *testServer) completeEvent(rec ingest.Record) {
	s.t.Helper()
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	require.NoError(s.t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	ok, err := s.events.CompleteTx(ctx, tx, ingest.FinishAttemptParams{ID: rec.ID, Attempts: rec.Attempts})
	require.NoError(s.t, err)
	require.True(s.t, ok)
	require.NoError(s.t, tx.Commit(ctx))
}

// fields decodes a JSON object body.
func fields(t *testing.T, r reply) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

// problem is an RFC 9457 problem as huma writes it.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Message  string `json:"message"`
		Location string `json:"location"`
	} `json:"errors"`
}

// requireProblem checks that r is a problem with status and returns it.
func requireProblem(t *testing.T, r reply, status int) problem {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
	var p problem
	require.NoError(t, json.Unmarshal(r.body, &p), "body: %s", r.body)
	require.Equal(t, status, p.Status)
	require.Equal(t, http.StatusText(status), p.Title)
	return p
}

// failures lists a problem's errors as "location: message".
func (p problem) failures() []string {
	out := make([]string, len(p.Errors))
	for i, e := range p.Errors {
		out[i] = e.Location + ": " + e.Message
	}
	return out
}

// locations lists the failing fields a problem names.
func (p problem) locations() []string {
	out := make([]string, len(p.Errors))
	for i, e := range p.Errors {
		out[i] = e.Location
	}
	return out
}

// ingestResult is the body of a 200 or 202 from POST /events/ingest.
type ingestResult struct {
	ID             string `json:"id"`
	IdempotencyKey string `json:"idempotency_key"`
	Status         string `json:"status"`
	Duplicate      bool   `json:"duplicate"`
}

func decodeResult(t *testing.T, r reply) ingestResult {
	t.Helper()
	var res ingestResult
	require.NoError(t, jsonUnmarshalStrict(r.body, &res), "body: %s", r.body)
	return res
}

// jsonUnmarshalStrict decodes b into v and fails on a field v does not know,
// so that a test comparing v also pins the body's shape.
func jsonUnmarshalStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// requireAccepted checks a 202 for a new event and returns its id.
func requireAccepted(t *testing.T, r reply, key string) string {
	t.Helper()
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	res := decodeResult(t, r)
	id, err := uuid.Parse(res.ID)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(7), id.Version())
	require.Equal(t, ingestResult{ID: res.ID, IdempotencyKey: key, Status: "PENDING", Duplicate: false}, res)
	return res.ID
}

// requireDuplicate checks a 200 for a key seen before.
func requireDuplicate(t *testing.T, r reply, originalID, key, status string) {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.Equal(t, ingestResult{ID: originalID, IdempotencyKey: key, Status: status, Duplicate: true}, decodeResult(t, r))
}

// bodyHashKey is the idempotency key of a body without one: sha256 of its canonical form.
func bodyHashKey(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// testSecret is a Standard Webhooks secret for the tests (16 random bytes).
const testSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

// signed is the Standard Webhooks header triple of body, signed by secret.
func signed(secret, id string, at time.Time, body []byte) []string {
	keys, err := webhook.ParseSecrets(secret)
	if err != nil {
		panic(err)
	}
	return []string{
		"webhook-id", id, "webhook-timestamp", strconv.FormatInt(at.Unix(), 10),
		"webhook-signature", webhook.Sign(keys[0], id, at, body),
	}
}

// eventOfSize is a valid event body of exactly n bytes.
func eventOfSize(t *testing.T, n int) []byte {
	t.Helper()
	const head, tail = `{"source":"big","type":"blob","payload":{"pad":"`, `"}}`
	pad := n - len(head) - len(tail)
	require.Positive(t, pad)
	b := []byte(head + strings.Repeat("x", pad) + tail)
	require.Len(t, b, n)
	return b
}
