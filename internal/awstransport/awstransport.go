// Package awstransport gives an AWS SDK configuration an HTTP transport its
// owner can close. The SDK's default client hides its transport (GetTransport
// returns a copy), so its keep-alive connections would outlive the clients
// built on it: in a long-lived process that is a leak, in tests goleak sees it.
package awstransport

import (
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// Own replaces the HTTP client in cfg by one with the same transport settings
// (including a CA bundle from AWS_CA_BUNDLE, which LoadDefaultConfig applied
// to the SDK's client) and the given overall timeout (0 keeps the SDK's), and
// returns what closes that transport's idle connections. Redirects are
// returned, not followed, as by the SDK's client (S3 answers a wrong region
// with 301). A client of another kind is left alone.
func Own(cfg *aws.Config, timeout time.Duration) (closeIdle func()) {
	var transport *http.Transport
	switch c := cfg.HTTPClient.(type) {
	case nil:
		transport = awshttp.NewBuildableClient().GetTransport()
	case *awshttp.BuildableClient:
		transport = c.GetTransport() // a copy, now ours
		if timeout == 0 {
			timeout = c.GetTimeout()
		}
	case *http.Client:
		// One that Own made before: a second owner gets its own copy.
		t, ok := c.Transport.(*http.Transport)
		if !ok {
			return func() {}
		}
		transport = t.Clone()
		if timeout == 0 {
			timeout = c.Timeout
		}
	default:
		return func() {}
	}
	cfg.HTTPClient = &http.Client{
		Transport:     transport,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return transport.CloseIdleConnections
}
