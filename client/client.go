package client

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// Headers the options set; a value the caller put on the request itself (a generated *Params
// field) is left alone.
const (
	headerAPIKey        = "X-API-Key" //nolint:gosec // G101: a header's name, not a credential
	headerAuthorization = "Authorization"
	headerSignature     = "X-Signature"
)

// New returns a client of the Daybook at baseURL, such as "http://localhost:8080". Every answer
// outside 2xx comes back as a *Problem error and no response, so a nil error means success:
//
//	var p *client.Problem
//	if errors.As(err, &p) && p.HasType(client.TypeInsufficientFunds) { ... }
//
// opts are the generated ones (WithHTTPClient, WithRequestEditorFn) and WithAPIKey,
// WithAdminToken, WithHMACSecret.
func New(baseURL string, opts ...ClientOption) (*ClientWithResponses, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("daybook client: base URL %q: want http(s)://host[:port]", baseURL)
	}
	c, err := NewClient(baseURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("daybook client: %w", err)
	}
	c.Client = problemDoer{next: c.Client}
	return &ClientWithResponses{ClientInterface: c}, nil
}

// problemDoer turns every non-2xx answer into a *Problem. The generated methods return a
// transport error as it is, so the caller sees the Problem itself.
type problemDoer struct{ next HttpRequestDoer }

func (d problemDoer) Do(req *http.Request) (*http.Response, error) {
	resp, err := d.next.Do(req)
	if err != nil || (resp.StatusCode >= 200 && resp.StatusCode <= 299) {
		return resp, err
	}
	defer resp.Body.Close()
	return nil, readProblem(resp)
}

// WithAPIKey sends key as X-API-Key, which the ingest endpoints need when DAYBOOK_API_KEYS is
// set. An empty key sends nothing.
func WithAPIKey(key string) ClientOption {
	return WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		if key != "" && req.Header.Get(headerAPIKey) == "" {
			req.Header.Set(headerAPIKey, key)
		}
		return nil
	})
}

// WithAdminToken sends "Authorization: Bearer token", which the /admin routes need when
// DAYBOOK_ADMIN_TOKEN is set; the other routes ignore it. An empty token sends nothing.
func WithAdminToken(token string) ClientOption {
	return WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		if token != "" && req.Header.Get(headerAuthorization) == "" {
			req.Header.Set(headerAuthorization, "Bearer "+token)
		}
		return nil
	})
}

// WithHMACSecret signs every request body as X-Signature: sha256=<hex HMAC-SHA256 of the body>,
// which the ingest endpoints check when DAYBOOK_HMAC_SECRET is set.
func WithHMACSecret(secret string) ClientOption {
	return WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		if req.Body == nil || req.Header.Get(headerSignature) != "" {
			return nil
		}
		// The body is read whole to sign it, then put back as a replayable reader.
		body, err := io.ReadAll(req.Body)
		closeErr := req.Body.Close()
		if err != nil {
			return fmt.Errorf("sign request body: %w", err)
		}
		if closeErr != nil {
			return fmt.Errorf("sign request body: %w", closeErr)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.ContentLength = int64(len(body))
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		req.Header.Set(headerSignature, "sha256="+hex.EncodeToString(mac.Sum(nil)))
		return nil
	})
}
