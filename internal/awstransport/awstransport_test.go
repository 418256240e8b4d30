package awstransport

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestOwn_EveryOwnerGetsATransportItCanClose(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()

	for name, start := range map[string]aws.HTTPClient{
		"no client":        nil,
		"the SDK's client": awshttp.NewBuildableClient().WithTimeout(7 * time.Second),
		"an owned client":  &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: 7 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			cfg := aws.Config{HTTPClient: start}
			closeIdle := Own(&cfg, 0)
			client, ok := cfg.HTTPClient.(*http.Client)
			require.True(t, ok)
			if start != nil {
				require.Equal(t, 7*time.Second, client.Timeout, "the timeout is kept")
				require.NotEqual(t, start, cfg.HTTPClient, "a client of its own")
			}

			resp, err := client.Get(srv.URL) // leaves a keep-alive connection behind
			require.NoError(t, err)
			resp.Body.Close()
			closeIdle() // and this closes it, while the server still keeps its end open
			goleak.VerifyNone(t, before)
		})
	}

	cfg := aws.Config{}
	closeIdle := Own(&cfg, 3*time.Second)
	defer closeIdle()
	client := cfg.HTTPClient.(*http.Client)
	require.Equal(t, 3*time.Second, client.Timeout)
	require.ErrorIs(t, client.CheckRedirect(nil, nil), http.ErrUseLastResponse, "redirects are answers, as in the SDK")
}
