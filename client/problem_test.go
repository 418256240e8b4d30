package client_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/client"
)

// answering serves every request with status, contentType and body: what a proxy in front of
// Daybook might say, which the real server never does.
func answering(t *testing.T, status int, contentType, body string) *client.ClientWithResponses {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(hs.Close)
	c, err := client.New(hs.URL, client.WithHTTPClient(hs.Client()))
	require.NoError(t, err)
	return c
}

func TestProblem_AnAnswerThatIsNotAProblemStillBecomesOne(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        client.Problem
		wantError   string
	}{
		{
			"text page", http.StatusBadGateway, "text/plain; charset=utf-8", "  upstream down\n",
			client.Problem{Type: "about:blank", Title: "Bad Gateway", Status: 502, Detail: "upstream down", StatusCode: 502},
			"daybook: 502 Bad Gateway: upstream down",
		},
		{
			"JSON that is not a problem", http.StatusServiceUnavailable, "application/json", `["busy"]`,
			client.Problem{Type: "about:blank", Title: "Service Unavailable", Status: 503, Detail: `["busy"]`, StatusCode: 503},
			`daybook: 503 Service Unavailable: ["busy"]`,
		},
		{
			"problem whose status an intermediary changed", http.StatusBadGateway, "application/problem+json; charset=utf-8",
			`{"type":"https://example.com/p/busy","title":"Busy","status":503,"detail":"try later","instance":"/i/1"}`,
			client.Problem{Type: "https://example.com/p/busy", Title: "Busy", Status: 503, Detail: "try later", Instance: "/i/1", StatusCode: 502},
			"daybook: 502 Busy: try later",
		},
		{
			"empty body", http.StatusTooManyRequests, "application/problem+json", ``,
			client.Problem{Type: "about:blank", Title: "Too Many Requests", Status: 429, StatusCode: 429},
			"daybook: 429 Too Many Requests",
		},
		{
			// 512 bytes end inside the 256th "é", which is dropped rather than cut in half.
			"long page is cut", http.StatusInternalServerError, "text/html", "x" + strings.Repeat("é", 300),
			client.Problem{Type: "about:blank", Title: "Internal Server Error", Status: 500, Detail: "x" + strings.Repeat("é", 255) + "…", StatusCode: 500},
			"daybook: 500 Internal Server Error: x" + strings.Repeat("é", 255) + "…",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := answering(t, tt.status, tt.contentType, tt.body)

			r, err := c.HealthWithResponse(t.Context())

			require.Nil(t, r)
			p := requireProblemOf(t, err)
			require.Equal(t, "3", p.Header.Get("Retry-After"))
			p.Header = nil
			require.Equal(t, tt.want, *p)
			require.Equal(t, tt.wantError, p.Error())
		})
	}
}

func TestProblem_2xxAnswersAreNotProblems(t *testing.T) {
	t.Parallel()
	c := answering(t, http.StatusOK, "application/json", `{"status":"ok"}`)

	r, err := c.HealthWithResponse(t.Context())

	require.NoError(t, err)
	require.NotNil(t, r.JSON200)
	require.Equal(t, "ok", r.JSON200.Status)
}

func TestProblem_TransportErrorsAreNotProblems(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.NotFoundHandler())
	hs.Close() // nothing listens there now
	c, err := client.New(hs.URL)
	require.NoError(t, err)

	_, err = c.GetEventWithResponse(t.Context(), uuid.New())

	require.Error(t, err)
	var p *client.Problem
	require.NotErrorAs(t, err, &p)
}

func TestProblem_HasTypeMatchesTheWholeLastSegment(t *testing.T) {
	t.Parallel()
	p := client.Problem{Type: "https://daybook.example/problems/insufficient-funds"}

	require.True(t, p.HasType(client.TypeInsufficientFunds))
	require.True(t, (&client.Problem{Type: "insufficient-funds"}).HasType(client.TypeInsufficientFunds))
	require.False(t, p.HasType("funds"))
	require.False(t, (&client.Problem{Type: "about:blank"}).HasType(client.TypeInsufficientFunds))
}

func TestNew_RefusesABaseURLWithoutSchemeOrHost(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"localhost:8080", "ftp://localhost", "http://", "://x", ""} {
		_, err := client.New(bad)
		require.ErrorContains(t, err, "want http(s)://host[:port]", bad)
	}
	_, err := client.New("http://127.0.0.1:8080/base")
	require.NoError(t, err)
}

func requireProblemOf(t *testing.T, err error) *client.Problem {
	t.Helper()
	var p *client.Problem
	require.ErrorAs(t, err, &p)
	return p
}
