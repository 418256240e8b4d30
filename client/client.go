package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Headers the options set; a value the caller put on the request itself (a generated *Params
// field) is left alone.
const (
	headerAuthorization    = "Authorization"
	headerIdempotencyKey   = "X-Idempotency-Key"
	headerWebhookID        = "webhook-id"
	headerWebhookTimestamp = "webhook-timestamp"
	headerWebhookSignature = "webhook-signature"
)

// New returns a client of the Daybook at baseURL, such as "http://localhost:8080". Every answer
// outside 2xx comes back as a *Problem error and no response, so a nil error means success:
//
//	var p *client.Problem
//	if errors.As(err, &p) && p.HasType(client.TypeInsufficientFunds) { ... }
//
// opts are the generated ones (WithHTTPClient, WithRequestEditorFn) and WithAPIKey,
// WithWebhookSecret.
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

// WithAPIKey sends key as "Authorization: Bearer key" on every request: a key made by
// `daybook keys create`, holding the scopes of the routes called. An empty key sends nothing.
func WithAPIKey(key string) ClientOption {
	return WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		if key != "" && req.Header.Get(headerAuthorization) == "" {
			req.Header.Set(headerAuthorization, "Bearer "+key)
		}
		return nil
	})
}

// WithWebhookSecret signs every request that has a body with Standard Webhooks headers under
// secret (whsec_<base64>), which the ingest endpoints require when DAYBOOK_WEBHOOK_SECRET is
// set. The server then deduplicates by webhook-id: it is the request's X-Idempotency-Key when
// one is given (so a retry is recognised), else a new id per request.
func WithWebhookSecret(secret string) ClientOption {
	signer, signerErr := standardwebhooks.NewWebhook(secret)
	return WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		if signerErr != nil || !strings.HasPrefix(secret, "whsec_") {
			return fmt.Errorf("daybook client: the webhook secret must be whsec_<base64>: %w", signerErr)
		}
		if req.Body == nil || req.Header.Get(headerWebhookSignature) != "" {
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

		id := req.Header.Get(headerIdempotencyKey)
		if id == "" {
			random := make([]byte, 16)
			if _, err := rand.Read(random); err != nil {
				return fmt.Errorf("webhook id: %w", err)
			}
			id = "msg_" + hex.EncodeToString(random)
		}
		now := time.Now()
		signature, err := signer.Sign(id, now, body)
		if err != nil {
			return fmt.Errorf("sign request body: %w", err)
		}
		req.Header.Set(headerWebhookID, id)
		req.Header.Set(headerWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
		req.Header.Set(headerWebhookSignature, signature)
		return nil
	})
}
