package openapitest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// daybook answers as the API does: /health is fine, a transfer without the
// money is a 422 problem whose type is the path problemType, and /metrics is
// not in the document.
func daybook(t *testing.T, problemType string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("POST /transfers", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = io.WriteString(w, `{"type":"`+problemType+`","title":"Unprocessable Entity","status":422}`)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# HELP up\n")
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return hs
}

func postTransfer(t *testing.T, client *http.Client, url string) {
	t.Helper()
	resp, err := client.Post(url+"/transfers", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
}

func TestClient_CommittedDocumentWantsAbsoluteProblemTypes(t *testing.T) {
	t.Parallel()
	for problemType, wantReported := range map[string]bool{
		"/problems/insufficient-funds":                    true,
		"https://example.com/problems/insufficient-funds": false,
		"urn:daybook:problem:insufficient-funds":          false,
	} {
		t.Run(problemType, func(t *testing.T) {
			t.Parallel()
			hs := daybook(t, problemType)
			rec := &recorder{TB: t}
			postTransfer(t, Client(rec, hs.Client()), hs.URL)
			errs := rec.Errors()
			if !wantReported {
				require.Empty(t, errs)
				return
			}
			require.Len(t, errs, 1)
			require.Contains(t, errs[0], "POST /transfers answered 422")
			require.Contains(t, errs[0], "$.type")
			require.Contains(t, errs[0], problemType)
		})
	}
}

func TestClient_HealthPassesAndMetricsIsSkipped(t *testing.T) {
	t.Parallel()
	hs := daybook(t, "urn:daybook:problem:x")
	rec := &recorder{TB: t}
	client := Client(rec, hs.Client())
	for _, path := range []string{"/health", "/metrics"} {
		resp, err := client.Get(hs.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	require.Empty(t, rec.Errors())
}

func TestClient_KeepsTheClientsSettings(t *testing.T) {
	t.Parallel()
	base := &http.Client{Timeout: 7e9, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	checked := Client(t, base)
	require.NotSame(t, base, checked)
	require.Equal(t, base.Timeout, checked.Timeout)
	require.NotNil(t, checked.CheckRedirect)
	require.Nil(t, base.Transport, "the original is not changed")
	require.IsType(t, &transport{}, checked.Transport)
	require.Equal(t, http.DefaultTransport, checked.Transport.(*transport).next)
}

func TestCheck_UsesTheCommittedDocument(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequest(http.MethodPost, "/transfers", nil)
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Type", "application/problem+json")
	rec.WriteHeader(http.StatusUnprocessableEntity)
	_, _ = io.WriteString(rec, `{"type":"/problems/insufficient-funds"}`)

	tb := &recorder{TB: t}
	Check(tb, req, rec.Result())
	require.Len(t, tb.Errors(), 1)
}

// One validator serves every test in the process, from many goroutines.
func TestTransport_ConcurrentUseIsRaceFree(t *testing.T) {
	t.Parallel()
	const goroutines, rounds = 50, 10
	hs := daybook(t, "/problems/insufficient-funds")
	rec := &recorder{TB: t}
	client := Client(rec, hs.Client())

	// assert, not require, in the goroutines: FailNow must run on the test's own.
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range rounds {
				resp, err := client.Get(hs.URL + "/health")
				if !assert.NoError(t, err) {
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !assert.NoError(t, err) || !assert.Equal(t, `{"status":"ok"}`, string(body)) {
					return
				}
				resp, err = client.Post(hs.URL+"/transfers", "application/json", strings.NewReader(`{}`))
				if !assert.NoError(t, err) {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	require.Len(t, rec.Errors(), goroutines*rounds, "every relative problem type, and nothing else")
}
