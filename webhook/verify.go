package webhook

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Tolerance is how far a message's timestamp may be from now, either way,
// which bounds how long a captured message can be replayed.
const Tolerance = 5 * time.Minute

// Bounds on the work one request can cause.
const (
	idBytesMax              = 255
	signatureHeaderBytesMax = 4 << 10
	signatureEntriesMax     = 10
	timestampDigitsMax      = 19 // fits an int64
)

// Errors Verify wraps.
var (
	ErrMissingHeader       = errors.New("webhook header is missing")
	ErrBadHeader           = errors.New("webhook header is malformed")
	ErrBadTimestamp        = errors.New("webhook-timestamp is not Unix seconds")
	ErrTimestampOutOfRange = errors.New("webhook-timestamp is too far from now")
	ErrNoMatchingSignature = errors.New("no webhook signature matches")
)

// Headers are the values of webhook-id, webhook-timestamp and
// webhook-signature.
type Headers struct {
	ID, Timestamp, Signature string
}

// Verifier checks signatures against every secret it holds. It is safe for
// concurrent use.
type Verifier struct {
	hooks []*standardwebhooks.Webhook
	now   func() time.Time
}

// NewVerifier returns a Verifier for the secrets in csv (see ParseSecrets)
// that reads the time from now, or from time.Now if now is nil.
func NewVerifier(csv string, now func() time.Time) (*Verifier, error) {
	secrets, err := ParseSecrets(csv)
	if err != nil {
		return nil, err
	}
	hooks := make([]*standardwebhooks.Webhook, len(secrets))
	for i, secret := range secrets {
		if hooks[i], err = standardwebhooks.NewWebhookRaw(secret); err != nil {
			return nil, fmt.Errorf("webhook secret %d of %d: %w", i+1, len(secrets), err)
		}
	}
	if now == nil {
		now = time.Now
	}
	return &Verifier{hooks: hooks, now: now}, nil
}

// Verify checks that body was signed for h.ID and h.Timestamp with one of the
// secrets, at a time within Tolerance of now. The signature header holds one
// or more space-separated "<version>,<base64>" entries; it matches when any
// of its first 10 entries is a v1 one that matches under any secret. Entries
// of other versions are ignored.
func (v *Verifier) Verify(h Headers, body []byte) error {
	for _, header := range []struct{ name, value string }{
		{standardwebhooks.HeaderWebhookID, h.ID},
		{standardwebhooks.HeaderWebhookTimestamp, h.Timestamp},
		{standardwebhooks.HeaderWebhookSignature, h.Signature},
	} {
		if header.value == "" {
			return fmt.Errorf("verify webhook: %s: %w", header.name, ErrMissingHeader)
		}
	}
	if len(h.ID) > idBytesMax {
		return fmt.Errorf("verify webhook: %s has %d bytes, more than %d: %w",
			standardwebhooks.HeaderWebhookID, len(h.ID), idBytesMax, ErrBadHeader)
	}
	if len(h.Signature) > signatureHeaderBytesMax {
		return fmt.Errorf("verify webhook: %s has %d bytes, more than %d: %w",
			standardwebhooks.HeaderWebhookSignature, len(h.Signature), signatureHeaderBytesMax, ErrBadHeader)
	}
	ts, err := parseTimestamp(h.Timestamp)
	if err != nil {
		return fmt.Errorf("verify webhook: %w", err)
	}
	if now := v.now(); now.Sub(ts) > Tolerance || ts.Sub(now) > Tolerance {
		return fmt.Errorf("verify webhook: %s is %s, now is %s: %w", standardwebhooks.HeaderWebhookTimestamp,
			ts.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ErrTimestampOutOfRange)
	}

	var expected [secretsMax]string
	for i, hook := range v.hooks {
		sig, err := hook.Sign(h.ID, ts, body)
		if err != nil {
			return fmt.Errorf("verify webhook: %w", err)
		}
		expected[i] = strings.TrimPrefix(sig, "v1,")
	}
	entries := 0
	for entry := range strings.FieldsSeq(h.Signature) {
		if entries++; entries > signatureEntriesMax {
			break
		}
		sig, ok := strings.CutPrefix(entry, "v1,")
		if !ok {
			continue
		}
		for _, want := range expected[:len(v.hooks)] {
			if hmac.Equal([]byte(sig), []byte(want)) {
				return nil
			}
		}
	}
	return fmt.Errorf("verify webhook: %w", ErrNoMatchingSignature)
}

// parseTimestamp reads Unix seconds written as plain decimal digits. The
// signature covers the number, not the header's text, so "+1" or "01" would
// verify like "1": refusing them keeps one spelling per timestamp.
func parseTimestamp(s string) (time.Time, error) {
	if len(s) > timestampDigitsMax || s[0] == '0' && len(s) > 1 {
		return time.Time{}, fmt.Errorf("%s %.20q: %w", standardwebhooks.HeaderWebhookTimestamp, s, ErrBadTimestamp)
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("%s %.20q: %w", standardwebhooks.HeaderWebhookTimestamp, s, ErrBadTimestamp)
		}
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %.20q: %w", standardwebhooks.HeaderWebhookTimestamp, s, ErrBadTimestamp)
	}
	return time.Unix(sec, 0), nil
}

// Sign returns the webhook-signature entry "v1,<base64>" for body sent with
// id at ts under secret. An empty secret, which ParseSecrets never returns,
// signs nothing: the result is "".
func Sign(secret []byte, id string, ts time.Time, body []byte) string {
	hook, err := standardwebhooks.NewWebhookRaw(secret)
	if err != nil {
		return ""
	}
	sig, err := hook.Sign(id, ts, body)
	if err != nil {
		return ""
	}
	return sig
}
