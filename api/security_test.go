package api_test

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/api"
	"github.com/daybook/daybook/apikey"
)

// designScope is the scope DESIGN.md ("Authentication and scopes") gives a
// route, written out here independently of the code: the test then checks
// the document against it. "" is an open route.
func designScope(t *testing.T, method, path string) string {
	t.Helper()
	ledgerRoute := strings.HasPrefix(path, "/accounts") || strings.HasPrefix(path, "/transfers") || strings.HasPrefix(path, "/transactions")
	switch {
	case path == "/health" || path == "/ready":
		return ""
	case strings.HasPrefix(path, "/events/ingest"):
		return apikey.ScopeEventsWrite
	case strings.HasPrefix(path, "/events") && method == http.MethodGet:
		return apikey.ScopeEventsRead
	case strings.HasPrefix(path, "/admin/"):
		return apikey.ScopeAdmin
	case ledgerRoute && method == http.MethodGet:
		return apikey.ScopeLedgerRead
	case ledgerRoute && (method == http.MethodPost || method == http.MethodPatch):
		return apikey.ScopeLedgerWrite
	}
	t.Fatalf("DESIGN.md gives %s %s no scope: add the route to the table there and here", method, path)
	return ""
}

type operation struct {
	method, path string
	op           *huma.Operation
}

// operations lists every operation of the generated document, sorted.
func operations(doc *huma.OpenAPI) []operation {
	var out []operation
	for path, item := range doc.Paths {
		for method, op := range map[string]*huma.Operation{
			http.MethodGet: item.Get, http.MethodPost: item.Post, http.MethodPut: item.Put,
			http.MethodPatch: item.Patch, http.MethodDelete: item.Delete,
		} {
			if op != nil {
				out = append(out, operation{method: method, path: path, op: op})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path+out[i].method < out[j].path+out[j].method })
	return out
}

// declaredScope is the one scope an operation's security requirements name,
// or "" when it is public; every requirement must name the same scope.
func declaredScope(t *testing.T, o operation) string {
	t.Helper()
	require.NotEmpty(t, o.op.Security, "%s %s declares no security", o.method, o.path)
	var scopes []string
	for _, req := range o.op.Security {
		if len(req) == 0 {
			return ""
		}
		for _, s := range req {
			scopes = append(scopes, s...)
		}
	}
	scopes = slices.Compact(scopes)
	require.Len(t, scopes, 1, "%s %s", o.method, o.path)
	return scopes[0]
}

func TestSecurity_EveryOperationEnforcesTheScopeTheDocumentDeclares(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	doc := api.OpenAPI()
	scopesOf := map[string]string{} // scope -> a key holding every scope but it
	for _, scope := range apikey.Scopes() {
		others := slices.DeleteFunc(apikey.Scopes(), func(s string) bool { return s == scope })
		scopesOf[scope] = s.newKey(others...)
	}
	holding := map[string]string{}
	for _, scope := range apikey.Scopes() {
		holding[scope] = s.newKey(scope)
	}
	require.NotEmpty(t, doc.Components.SecuritySchemes)

	ops := operations(doc)
	require.GreaterOrEqual(t, len(ops), 15)
	for _, o := range ops {
		name := o.method + " " + o.path
		scope := declaredScope(t, o)
		require.Equal(t, designScope(t, o.method, o.path), scope, "%s: the document's scope differs from DESIGN.md", name)

		path := strings.NewReplacer("{id}", uuid.Must(uuid.NewV7()).String()).Replace(o.path)
		var body []byte
		if o.op.RequestBody != nil {
			body = []byte(`{}`)
		}
		if scope == "" {
			r := s.do(o.method, path, body)
			require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, r.status, "%s is public", name)
			continue
		}
		require.Contains(t, o.op.Responses, "401", "%s documents its 401", name)
		require.Contains(t, o.op.Responses, "403", "%s documents its 403", name)

		r := s.do(o.method, path, body)
		requireProblem(t, r, http.StatusUnauthorized)
		require.Equal(t, `Bearer realm="daybook"`, r.header.Get("WWW-Authenticate"), name)

		p := requireProblem(t, s.do(o.method, path, body, bearer(scopesOf[scope])...), http.StatusForbidden)
		require.Contains(t, p.Detail, "lacks the scope "+scope, name)

		r = s.do(o.method, path, body, bearer(holding[scope])...)
		require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, r.status, "%s is served with %s: %s", name, scope, r.body)
	}
	require.Equal(t, float64(len(ops)-2), testutil.ToFloat64(s.metrics.AuthFailures.WithLabelValues("missing")))
	require.Equal(t, float64(len(ops)-2), testutil.ToFloat64(s.metrics.AuthFailures.WithLabelValues("scope")))
}

func TestSecurity_OnlyHealthAndReadyAreOpenOnceAKeyExists(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.newKey(apikey.ScopeAdmin)

	var public []string
	for _, o := range operations(api.OpenAPI()) {
		if declaredScope(t, o) == "" {
			public = append(public, o.method+" "+o.path)
		}
	}
	require.Equal(t, []string{"GET /health", "GET /ready"}, public)
	// Outside the document: metrics, the document itself and its viewer.
	for _, path := range []string{"/metrics", "/openapi.json", "/openapi.yaml", "/docs"} {
		require.Equal(t, http.StatusOK, s.get(path).status, path)
	}
}

func TestSecurity_UnknownRevokedAndMalformedKeysAre401(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	reader := s.newKey(apikey.ScopeLedgerRead)
	id, _ := apikey.ParseID(reader)
	path := "/accounts/" + uuid.NewString()

	require.Equal(t, http.StatusNotFound, s.get(path, bearer(reader)...).status)
	require.Equal(t, http.StatusNotFound, s.get(path, "Authorization", "bearer "+reader).status, "the scheme name is case-insensitive")

	for _, header := range [][]string{
		nil, // missing
		bearer("dbk_aaaaaaaaaaaa_" + strings.Repeat("x", 43)), // unknown
		bearer(reader[:len(reader)-1] + "x"),                  // the right id, a wrong secret
		{"Authorization", "Basic " + reader},                  // not bearer: missing
		{"Authorization", "Bearer "},                          // empty: missing
		{"X-API-Key", reader},                                 // the ledger takes no X-API-Key: missing
	} {
		requireProblem(t, s.get(path, header...), http.StatusUnauthorized)
	}
	require.Equal(t, 4.0, testutil.ToFloat64(s.metrics.AuthFailures.WithLabelValues("missing")))
	require.Equal(t, 2.0, testutil.ToFloat64(s.metrics.AuthFailures.WithLabelValues("unknown")))

	_, err := s.keys.Revoke(t.Context(), id)
	require.NoError(t, err)
	require.NoError(t, s.keyring.Refresh(t.Context()))
	p := requireProblem(t, s.get(path, bearer(reader)...), http.StatusUnauthorized)
	require.Contains(t, p.Detail, "revoked")
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.AuthFailures.WithLabelValues("revoked")))
}

func TestSecurity_OpenUntilTheFirstKeyThenDefaultDeny(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	create := []byte(`{"name":"alice"}`)

	require.Equal(t, http.StatusCreated, s.do(http.MethodPost, "/accounts", create).status, "no key exists: open (on loopback)")

	writer := s.newKey(apikey.ScopeLedgerWrite)
	requireProblem(t, s.do(http.MethodPost, "/accounts", create), http.StatusUnauthorized)
	require.Equal(t, http.StatusCreated, s.do(http.MethodPost, "/accounts", create, bearer(writer)...).status)

	// Revoking every key does not open the API again.
	id, _ := apikey.ParseID(writer)
	_, err := s.keys.Revoke(t.Context(), id)
	require.NoError(t, err)
	require.NoError(t, s.keyring.Refresh(t.Context()))
	requireProblem(t, s.do(http.MethodPost, "/accounts", create), http.StatusUnauthorized)
}

func TestSecurity_AuthOffServesEveryoneEvenWithKeys(t *testing.T) {
	t.Parallel()
	s := newServer(t, withAuthOff())
	s.newKey(apikey.ScopeAdmin)

	require.Equal(t, http.StatusCreated, s.do(http.MethodPost, "/accounts", []byte(`{"name":"a"}`)).status)
	require.Equal(t, http.StatusOK, s.get("/admin/dlq").status)
}

func TestSecurity_IngestTakesTheKeyAsXAPIKeyToo(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	writer := s.newKey(apikey.ScopeEventsWrite)
	body := `{"event_id":"k-1","source":"clicks","type":"click","payload":{}}`

	requireProblem(t, s.ingest(body), http.StatusUnauthorized)
	requireProblem(t, s.ingest(body, "X-API-Key", "wrong"), http.StatusUnauthorized)
	require.Equal(t, 2.0, testutil.ToFloat64(s.metrics.EventsIngested.WithLabelValues("unauthorized")))
	require.Zero(t, s.xlen())

	requireAccepted(t, s.ingest(body, "X-API-Key", writer), "k-1")
	batch := `{"events":[{"event_id":"k-2","source":"clicks","type":"click","payload":{}}]}`
	require.Equal(t, http.StatusOK, s.do(http.MethodPost, "/events/ingest/batch", []byte(batch), bearer(writer)...).status)
	require.EqualValues(t, 2, s.xlen())
}

func TestSecurity_WhatAKeyCreatesRecordsTheKey(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	key := s.newKey(apikey.ScopeEventsWrite, apikey.ScopeLedgerWrite, apikey.ScopeLedgerRead)
	id, _ := apikey.ParseID(key)
	auth := bearer(key)

	requireAccepted(t, s.ingest(`{"event_id":"who-1","source":"clicks","type":"click","payload":{}}`, auth...), "who-1")
	require.Equal(t, id, s.streamEvents()[0].APIKeyID, "the worker stores the event with the key that sent it")

	world := fields(t, s.do(http.MethodPost, "/accounts", []byte(`{"name":"world","allow_negative":true}`), auth...))
	alice := fields(t, s.do(http.MethodPost, "/accounts", []byte(`{"name":"alice"}`), auth...))
	require.Equal(t, id, world["api_key_id"])
	r := s.do(http.MethodPost, "/transfers", []byte(`{"from_account_id":"`+world["id"].(string)+`","to_account_id":"`+
		alice["id"].(string)+`","amount":"5","idempotency_key":"who-t"}`), auth...)
	require.Equal(t, http.StatusCreated, r.status, "body: %s", r.body)
	tr := fields(t, r)
	require.Equal(t, id, tr["api_key_id"])
	got := fields(t, s.get("/transfers/"+tr["id"].(string), auth...))
	require.Equal(t, id, got["api_key_id"])

	// The key's last use reaches the store with the next refresh.
	require.NoError(t, s.keyring.Refresh(t.Context()))
	stored, err := s.keys.Get(t.Context(), id)
	require.NoError(t, err)
	require.NotNil(t, stored.LastUsedAt)
}

func TestSecurity_EachKeyHasItsOwnRateLimit(t *testing.T) {
	t.Parallel()
	s := newServer(t, withRate(100))
	_, slow, err := s.keys.Create(t.Context(), apikey.CreateParams{Name: "slow", Scopes: []string{apikey.ScopeEventsWrite}, RateLimit: 2})
	require.NoError(t, err)
	fast := s.newKey(apikey.ScopeEventsWrite)

	for i := range 2 {
		require.Equal(t, http.StatusAccepted, s.ingest(`{"source":"c","type":"t","payload":{"i":`+string(rune('0'+i))+`}}`, bearer(slow)...).status)
	}
	r := s.ingest(`{"source":"c","type":"t","payload":{"i":9}}`, bearer(slow)...)
	requireProblem(t, r, http.StatusTooManyRequests)
	require.NotEmpty(t, r.header.Get("Retry-After"))
	// The other key counts in a bucket of its own, at the default rate.
	for i := range 5 {
		require.Equal(t, http.StatusAccepted, s.ingest(`{"source":"c","type":"f","payload":{"i":`+string(rune('0'+i))+`}}`, bearer(fast)...).status)
	}
}

func TestSecurity_ASecretNeverReachesTheAnswer(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	key := s.newKey(apikey.ScopeLedgerRead)
	wrong := key[:len(key)-4] + "abcd"

	for _, r := range []reply{
		s.get("/accounts/"+uuid.NewString(), bearer(wrong)...),
		s.do(http.MethodPost, "/accounts", []byte(`{"name":"a"}`), bearer(key)...),
	} {
		require.NotContains(t, string(r.body), key[16:])
		require.NotContains(t, string(r.body), wrong[16:])
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	secret := key[len(key)-43:]
	var withSecret, hashed int
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE t::text LIKE '%' || $1 || '%'),
		count(*) FILTER (WHERE t.secret_sha256 = sha256($2::bytea)) FROM api_keys t`, secret, []byte(key)).Scan(&withSecret, &hashed))
	require.Zero(t, withSecret, "no column holds the secret")
	require.Equal(t, 1, hashed, "the key is stored as its SHA-256")
}
