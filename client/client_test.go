package client_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/redisstream"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/api"
	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/client"
	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/openapitest"
	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/replay"
	"github.com/daybook/daybook/webhook"
)

// daybook is the whole API on real Postgres (a schema of its own) and real Redis (a key prefix
// of its own), served over loopback HTTP, with cfg's security settings and no rate limit. No
// worker runs, so accepted events stay PENDING.
type daybook struct {
	t    *testing.T
	url  string
	hc   *http.Client
	keys *apikey.Store
	ring *apikey.Keyring
}

func newDaybook(t *testing.T, cfg api.Config) daybook {
	t.Helper()
	pool := testdb.New(t)
	rdb, prefix := testredis.New(t)
	stream := prefix + transport.EventsTopic
	g, err := redisstream.NewGate(rdb, redisstream.GateConfig{KeyPrefix: prefix, Stream: stream})
	require.NoError(t, err)
	// Not closed: its Close would close the shared client, which testredis closes itself.
	pub, err := redisstream.NewRedisPublisher(rdb, nil, nil)
	require.NoError(t, err)
	events, dead := ingest.NewStore(pool), deadletter.NewStore(pool)
	book, err := ledger.NewService(pool, ledger.Config{})
	require.NoError(t, err)
	keys := apikey.NewStore(pool)
	ring, err := apikey.NewKeyring(keys, apikey.KeyringConfig{Refresh: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, ring.Start(t.Context()))
	t.Cleanup(ring.Stop)
	cfg.Keys = ring
	srv := api.New(api.Deps{
		Pool: pool, Redis: rdb, Gate: g, Events: events, Dead: dead, Ledger: book,
		Replayer: replay.New(events, dead, transport.Sender{Pub: pub}, stream),
		Metrics:  observability.NewMetrics(), Logger: slog.New(slog.DiscardHandler),
	}, cfg)
	hs := httptest.NewServer(srv.Handler())
	// Registered after testdb and testredis, so it runs before them: no request is in flight
	// when the pool and the Redis client close.
	t.Cleanup(hs.Close)
	// Every answer the client gets is checked against the committed document too.
	return daybook{t: t, url: hs.URL, hc: openapitest.Client(t, hs.Client()), keys: keys, ring: ring}
}

// newKey makes an API key with scopes, known to the server at once.
func (d daybook) newKey(scopes ...string) string {
	d.t.Helper()
	_, secret, err := d.keys.Create(d.t.Context(), apikey.CreateParams{Name: "client-test", Scopes: scopes})
	require.NoError(d.t, err)
	require.NoError(d.t, d.ring.Refresh(d.t.Context()))
	return secret
}

// client is a client made by client.New with opts, on the test server's HTTP client (whose idle
// connections the server closes).
func (d daybook) client(opts ...client.ClientOption) *client.ClientWithResponses {
	d.t.Helper()
	c, err := client.New(d.url, append([]client.ClientOption{client.WithHTTPClient(d.hc)}, opts...)...)
	require.NoError(d.t, err)
	return c
}

// requireProblem checks that err is a *client.Problem with status code and returns it.
func requireProblem(t *testing.T, err error, code int) *client.Problem {
	t.Helper()
	p := requireProblemOf(t, err)
	require.Equal(t, code, p.StatusCode, "problem: %v", p)
	require.Equal(t, code, p.Status)
	require.Equal(t, http.StatusText(code), p.Title)
	require.Equal(t, "application/problem+json", p.Header.Get("Content-Type"))
	return p
}

func event(id string) client.EventIn {
	return client.EventIn{
		EventID: &id, Source: "order_updates", Type: "order.updated",
		Payload: map[string]any{"status": "paid", "amount": "12.30"},
	}
}

func TestIngestEvent_NewAnswers202PendingAndTheSameKeyAgain200WithTheOriginalID(t *testing.T) {
	t.Parallel()
	c := newDaybook(t, api.Config{}).client()
	ctx := t.Context()

	first, err := c.IngestEventWithResponse(ctx, nil, event("evt-1"))

	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, first.StatusCode())
	require.NotNil(t, first.JSON202, "body: %s", first.Body)
	id, err := uuid.Parse(first.JSON202.ID)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(7), id.Version())
	require.Equal(t, client.IngestResult{ID: id.String(), IdempotencyKey: "evt-1", Status: client.IngestResultStatusPENDING}, *first.JSON202)
	require.Nil(t, first.JSON200)

	again, err := c.IngestEventWithResponse(ctx, nil, event("evt-1"))

	require.NoError(t, err)
	require.Equal(t, http.StatusOK, again.StatusCode())
	require.NotNil(t, again.JSON200, "body: %s", again.Body)
	require.Equal(t, client.IngestResult{ID: id.String(), IdempotencyKey: "evt-1", Status: client.IngestResultStatusPENDING, Duplicate: true}, *again.JSON200)
	require.Nil(t, again.JSON202)

	// Not yet stored by a worker: the API answers from the gate's pending marker.
	got, err := c.GetEventWithResponse(ctx, id)
	require.NoError(t, err)
	require.NotNil(t, got.JSON200, "body: %s", got.Body)
	require.Equal(t, id.String(), got.JSON200.ID)
	require.Equal(t, "evt-1", got.JSON200.IdempotencyKey)
	require.Equal(t, "order_updates", got.JSON200.Source)
	require.Equal(t, "order.updated", got.JSON200.Type)
	require.Equal(t, client.EventOutStatusPENDING, got.JSON200.Status)
	require.Zero(t, got.JSON200.Attempts)
	require.Nil(t, got.JSON200.LastError)
}

func TestIngestEvent_HeaderKeyOverridesEventID(t *testing.T) {
	t.Parallel()
	c := newDaybook(t, api.Config{}).client()
	key := "header-key"

	r, err := c.IngestEventWithResponse(t.Context(), &client.IngestEventParams{XIdempotencyKey: &key}, event("evt-2"))

	require.NoError(t, err)
	require.NotNil(t, r.JSON202, "body: %s", r.Body)
	require.Equal(t, "header-key", r.JSON202.IdempotencyKey)
}

func TestIngestBatch_AnswersOneResultPerEventInOrder(t *testing.T) {
	t.Parallel()
	c := newDaybook(t, api.Config{}).client()
	ctx := t.Context()
	single, err := c.IngestEventWithResponse(ctx, nil, event("a"))
	require.NoError(t, err)
	require.NotNil(t, single.JSON202, "body: %s", single.Body)

	r, err := c.IngestBatchWithResponse(ctx, nil, client.BatchInputBody{Events: []client.EventIn{event("b"), event("a"), event("c")}})

	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.StatusCode())
	require.NotNil(t, r.JSON200, "body: %s", r.Body)
	items := r.JSON200.Items
	require.Len(t, items, 3)
	pending := client.IngestResultStatusPENDING
	require.Equal(t, client.IngestResult{ID: items[0].ID, IdempotencyKey: "b", Status: pending}, items[0])
	require.Equal(t, client.IngestResult{ID: single.JSON202.ID, IdempotencyKey: "a", Status: pending, Duplicate: true}, items[1])
	require.Equal(t, client.IngestResult{ID: items[2].ID, IdempotencyKey: "c", Status: pending}, items[2])
	require.NotEqual(t, items[0].ID, items[2].ID)
	require.NotEqual(t, single.JSON202.ID, items[0].ID)
}

func TestIngestEvent_SchemaViolationIsA422ProblemNamingEachField(t *testing.T) {
	t.Parallel()
	c := newDaybook(t, api.Config{}).client()
	bad := event("evt-bad")
	bad.Source = "Bad Source!"

	r, err := c.IngestEventWithResponse(t.Context(), nil, bad)

	require.Nil(t, r)
	p := requireProblem(t, err, http.StatusUnprocessableEntity)
	require.Equal(t, "about:blank", p.Type)
	require.Equal(t, "validation failed", p.Detail)
	require.Equal(t, []client.ProblemError{{
		Location: "body.source",
		Message:  "expected string to match pattern ^[a-z0-9][a-z0-9_.-]*$",
		Value:    "Bad Source!",
	}}, p.Errors)
	require.Equal(t, "daybook: 422 Unprocessable Entity: validation failed "+
		"(body.source: expected string to match pattern ^[a-z0-9][a-z0-9_.-]*$)", p.Error())
}

func TestClient_WithAPIKeySendsTheKeyAsBearerOnEveryRoute(t *testing.T) {
	t.Parallel()
	d := newDaybook(t, api.Config{})
	writer := d.newKey(apikey.ScopeEventsWrite)
	ctx := t.Context()

	_, err := d.client().IngestEventWithResponse(ctx, nil, event("evt-1"))
	p := requireProblem(t, err, http.StatusUnauthorized)
	require.Equal(t, "this operation needs an API key: Authorization: Bearer <key> or X-API-Key: <key>", p.Detail)
	require.Equal(t, `Bearer realm="daybook"`, p.Header.Get("WWW-Authenticate"))

	_, err = d.client(client.WithAPIKey("dbk_aaaaaaaaaaaa_nope")).IngestBatchWithResponse(ctx, nil, client.BatchInputBody{Events: []client.EventIn{event("evt-1")}})
	p = requireProblem(t, err, http.StatusUnauthorized)
	require.Equal(t, "the API key is unknown", p.Detail)

	c := d.client(client.WithAPIKey(writer))
	r, err := c.IngestEventWithResponse(ctx, nil, event("evt-1"))
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, r.StatusCode())

	// The key lacks admin: the problem names the scope.
	_, err = c.ListDeadLettersWithResponse(ctx, nil)
	p = requireProblem(t, err, http.StatusForbidden)
	require.Contains(t, p.Detail, "lacks the scope admin")

	admin := d.client(client.WithAPIKey(d.newKey(apikey.ScopeAdmin)))
	l, err := admin.ListDeadLettersWithResponse(ctx, nil)
	require.NoError(t, err)
	require.NotNil(t, l.JSON200, "body: %s", l.Body)
	require.Empty(t, l.JSON200.Items)
	require.Nil(t, l.JSON200.NextCursor)
}

func TestIngestEvent_SignedWithTheWebhookSecretWhenConfigured(t *testing.T) {
	t.Parallel()
	const secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	v, err := webhook.NewVerifier(secret, nil)
	require.NoError(t, err)
	d := newDaybook(t, api.Config{Webhook: v})
	ctx := t.Context()

	_, err = d.client(client.WithWebhookSecret("whsec_8Ts0Ctlvtzx8ZuSS0ERtRfx7wRbFJWgN")).IngestEventWithResponse(ctx, nil, event("evt-1"))
	p := requireProblem(t, err, http.StatusUnauthorized)
	require.Equal(t, "webhook-signature does not match the body under any configured secret", p.Detail)
	_, err = d.client().IngestEventWithResponse(ctx, nil, event("evt-1"))
	p = requireProblem(t, err, http.StatusUnauthorized)
	require.Contains(t, p.Detail, "a webhook signature is required")

	signed := d.client(client.WithWebhookSecret(secret))
	key := "order-77-paid"
	r, err := signed.IngestEventWithResponse(ctx, &client.IngestEventParams{XIdempotencyKey: &key}, event("evt-1"))
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, r.StatusCode())
	require.Equal(t, key, r.JSON202.IdempotencyKey, "the webhook-id is the request's idempotency key")
	again, err := signed.IngestEventWithResponse(ctx, &client.IngestEventParams{XIdempotencyKey: &key}, event("evt-1"))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, again.StatusCode(), "a retry under the same key is a duplicate")

	b, err := signed.IngestBatchWithResponse(ctx, nil, client.BatchInputBody{Events: []client.EventIn{event("evt-2")}})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, b.StatusCode())

	_, err = d.client(client.WithWebhookSecret("not-a-secret")).IngestEventWithResponse(ctx, nil, event("evt-3"))
	require.ErrorContains(t, err, "whsec_")
}

func TestGetEvent_UnknownIDIsA404Problem(t *testing.T) {
	t.Parallel()
	c := newDaybook(t, api.Config{}).client()
	id := uuid.MustParse("01a22516-0000-7000-8000-000000000001")

	_, err := c.GetEventWithResponse(t.Context(), id)

	p := requireProblem(t, err, http.StatusNotFound)
	require.Equal(t, "no event with id "+id.String(), p.Detail)
}

// ledgerFixture is an external account (allow_negative) and two customer accounts, one funded.
type ledgerFixture struct {
	c                   *client.ClientWithResponses
	world, alice, bobby uuid.UUID
}

func newLedgerFixture(t *testing.T, fund string) ledgerFixture {
	t.Helper()
	c := newDaybook(t, api.Config{}).client()
	open := func(name string, allowNegative bool) uuid.UUID {
		r, err := c.CreateAccountWithResponse(t.Context(), client.CreateAccountInputBody{Name: name, AllowNegative: &allowNegative})
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, r.StatusCode())
		require.NotNil(t, r.JSON201, "body: %s", r.Body)
		a := *r.JSON201
		require.Equal(t, client.AccountOut{
			ID: a.ID, Name: name, Currency: "USD", AllowNegative: allowNegative, Balance: "0.0000", Version: 1, CreatedAt: a.CreatedAt,
		}, a)
		return uuid.MustParse(a.ID)
	}
	f := ledgerFixture{c: c, world: open("world", true), alice: open("alice", false), bobby: open("bobby", false)}
	r, err := f.transfer(t, f.world, f.alice, fund, "fund-alice")
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, r.StatusCode())
	return f
}

func (f ledgerFixture) transfer(t *testing.T, from, to uuid.UUID, amount, key string) (*client.CreateTransferResponse, error) {
	t.Helper()
	return f.c.CreateTransferWithResponse(t.Context(), nil, client.TransferInputBody{
		FromAccountID: from, ToAccountID: to, Amount: amount, IdempotencyKey: &key,
	})
}

func (f ledgerFixture) balance(t *testing.T, id uuid.UUID) string {
	t.Helper()
	r, err := f.c.GetAccountWithResponse(t.Context(), id)
	require.NoError(t, err)
	require.NotNil(t, r.JSON200, "body: %s", r.Body)
	return r.JSON200.Balance
}

func TestCreateTransfer_Answers201ThenTheOriginalWith200ForTheSameKey(t *testing.T) {
	t.Parallel()
	f := newLedgerFixture(t, "100.00")

	first, err := f.transfer(t, f.alice, f.bobby, "30.50", "t-1")

	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, first.StatusCode())
	require.NotNil(t, first.JSON201, "body: %s", first.Body)
	tr := *first.JSON201
	require.Equal(t, client.TransferOut{
		ID: tr.ID, FromAccountID: f.alice.String(), ToAccountID: f.bobby.String(), Amount: "30.5000", Currency: "USD",
		Status: client.TransferOutStatusCOMPLETED, IdempotencyKey: "t-1", CreatedAt: tr.CreatedAt,
	}, tr)

	again, err := f.transfer(t, f.alice, f.bobby, "30.50", "t-1")

	require.NoError(t, err)
	require.Equal(t, http.StatusOK, again.StatusCode())
	require.NotNil(t, again.JSON200, "body: %s", again.Body)
	require.Equal(t, tr.ID, again.JSON200.ID)
	require.Equal(t, "69.5000", f.balance(t, f.alice), "moved once")
	require.Equal(t, "30.5000", f.balance(t, f.bobby))

	got, err := f.c.GetTransferWithResponse(t.Context(), uuid.MustParse(tr.ID))
	require.NoError(t, err)
	require.NotNil(t, got.JSON200, "body: %s", got.Body)
	require.Equal(t, tr.ID, got.JSON200.ID)
	require.Equal(t, "30.5000", got.JSON200.Amount)
}

func TestCreateTransfer_InsufficientFundsIsA422ProblemAndMovesNothing(t *testing.T) {
	t.Parallel()
	f := newLedgerFixture(t, "10.00")

	r, err := f.transfer(t, f.alice, f.bobby, "10.0001", "t-over")

	require.Nil(t, r)
	p := requireProblem(t, err, http.StatusUnprocessableEntity)
	require.Equal(t, "tag:daybook.dev,2026:problems/insufficient-funds", p.Type)
	require.True(t, p.HasType(client.TypeInsufficientFunds))
	require.False(t, p.HasType("funds"))
	require.Equal(t, "the debited account does not hold enough money; nothing was written", p.Detail)
	require.Empty(t, p.Errors)
	require.Equal(t, "10.0000", f.balance(t, f.alice))
	require.Equal(t, "0.0000", f.balance(t, f.bobby))
}

func TestCreateTransfer_MalformedAmountIsA422ProblemNamingTheField(t *testing.T) {
	t.Parallel()
	f := newLedgerFixture(t, "10.00")

	_, err := f.transfer(t, f.alice, f.bobby, "1.23456", "t-bad")

	p := requireProblem(t, err, http.StatusUnprocessableEntity)
	require.False(t, p.HasType(client.TypeInsufficientFunds))
	require.Equal(t, []client.ProblemError{{
		Location: "body.amount",
		Message:  `amount must be a decimal string greater than 0 with at most 4 places, such as "100.50"`,
		Value:    "1.23456",
	}}, p.Errors)
	require.Equal(t, "10.0000", f.balance(t, f.alice))
}

func TestCreateTransfer_SameKeyWithAnotherBodyIsA409Problem(t *testing.T) {
	t.Parallel()
	f := newLedgerFixture(t, "10.00")

	_, err := f.transfer(t, f.alice, f.bobby, "1.00", "fund-alice")

	p := requireProblem(t, err, http.StatusConflict)
	require.Equal(t, "this idempotency key was used for a different request", p.Detail)
}
