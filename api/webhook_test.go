package api_test

import (
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// otherSecret is a second signing secret, as during a rotation.
const otherSecret = "whsec_8Ts0Ctlvtzx8ZuSS0ERtRfx7wRbFJWgN"

// clock is a verifier clock that a test moves.
type clock struct{ unix atomic.Int64 }

func newClock(at time.Time) *clock {
	c := &clock{}
	c.unix.Store(at.Unix())
	return c
}

func (c *clock) now() time.Time { return time.Unix(c.unix.Load(), 0) }

func TestSignedIngest_RefusesEveryMissingOrWrongSignatureWith401(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s := newServer(t, withWebhookSecret(t, testSecret, newClock(now).now))
	body := []byte(`{"source":"clicks","type":"click","payload":{"x":1}}`)
	good := signed(testSecret, "msg_1", now, body)

	withHeader := func(name, value string) []string {
		h := slices.Clone(good)
		for i := 0; i < len(h); i += 2 {
			if h[i] == name {
				h[i+1] = value
			}
		}
		return h
	}
	for name, header := range map[string][]string{
		"no headers":              nil,
		"no signature":            withHeader("webhook-signature", ""),
		"no id":                   withHeader("webhook-id", ""),
		"no timestamp":            withHeader("webhook-timestamp", ""),
		"timestamp not a number":  withHeader("webhook-timestamp", "soon"),
		"5 min 1 s old":           signed(testSecret, "msg_1", now.Add(-5*time.Minute-time.Second), body),
		"5 min 1 s ahead":         signed(testSecret, "msg_1", now.Add(5*time.Minute+time.Second), body),
		"signed by another":       signed(otherSecret, "msg_1", now, body),
		"signature of another id": withHeader("webhook-id", "msg_2"),
		"signature not v1":        withHeader("webhook-signature", strings.Replace(good[5], "v1,", "v2,", 1)),
	} {
		p := requireProblem(t, s.do(http.MethodPost, "/events/ingest", body, header...), http.StatusUnauthorized)
		require.NotEmpty(t, p.Detail, name)
	}
	// The signature covers the body: one byte more and it no longer matches.
	requireProblem(t, s.do(http.MethodPost, "/events/ingest", append(body, ' '), good...), http.StatusUnauthorized)
	require.Zero(t, s.xlen())
	require.Equal(t, 11.0, testutil.ToFloat64(s.metrics.AuthFailures.WithLabelValues("signature")))

	// Exactly 5 minutes away either way is inside the tolerance.
	requireAccepted(t, s.do(http.MethodPost, "/events/ingest", body, signed(testSecret, "msg_old", now.Add(-5*time.Minute), body)...), "msg_old")
	requireAccepted(t, s.do(http.MethodPost, "/events/ingest", body, signed(testSecret, "msg_new", now.Add(5*time.Minute), body)...), "msg_new")
}

func TestSignedIngest_WebhookIDIsTheKeySoAReplayIsADuplicate(t *testing.T) {
	t.Parallel()
	now := time.Now()
	s := newServer(t, withWebhookSecret(t, testSecret, func() time.Time { return now }))
	body := []byte(`{"event_id":"ignored-when-signed","source":"clicks","type":"click","payload":{"x":1}}`)
	captured := signed(testSecret, "msg_replayed", now, body)

	id := requireAccepted(t, s.do(http.MethodPost, "/events/ingest", body, captured...), "msg_replayed")
	requireDuplicate(t, s.do(http.MethodPost, "/events/ingest", body, captured...), id, "msg_replayed", "PENDING")

	// A new X-Idempotency-Key on the captured request cannot make it new.
	replay := append(slices.Clone(captured), "X-Idempotency-Key", "fresh-key")
	p := requireProblem(t, s.do(http.MethodPost, "/events/ingest", body, replay...), http.StatusUnprocessableEntity)
	require.Equal(t, "header.X-Idempotency-Key", p.Errors[0].Location)
	// The same value is allowed.
	same := append(slices.Clone(captured), "X-Idempotency-Key", "msg_replayed")
	requireDuplicate(t, s.do(http.MethodPost, "/events/ingest", body, same...), id, "msg_replayed", "PENDING")
	require.EqualValues(t, 1, s.xlen())
}

func TestSignedIngest_EitherSecretVerifiesDuringARotation(t *testing.T) {
	t.Parallel()
	s := newServer(t, withWebhookSecret(t, testSecret+", "+otherSecret, time.Now))
	body := []byte(`{"source":"clicks","type":"click","payload":{}}`)

	requireAccepted(t, s.do(http.MethodPost, "/events/ingest", body, signed(testSecret, "m-old", time.Now(), body)...), "m-old")
	requireAccepted(t, s.do(http.MethodPost, "/events/ingest", body, signed(otherSecret, "m-new", time.Now(), body)...), "m-new")

	// A sender signing with both sends two signatures, space-separated; one
	// that is wrong does not spoil the other.
	h := signed(otherSecret, "m-both", time.Now(), body)
	h[5] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " + h[5]
	requireAccepted(t, s.do(http.MethodPost, "/events/ingest", body, h...), "m-both")
}

func TestSignedIngest_BatchItemsAreKeyedByWebhookIDAndPosition(t *testing.T) {
	t.Parallel()
	s := newServer(t, withWebhookSecret(t, testSecret, time.Now))
	batch := []byte(`{"events":[{"source":"c","type":"t","payload":{"i":0}},{"event_id":"x","source":"c","type":"t","payload":{"i":1}}]}`)

	requireProblem(t, s.do(http.MethodPost, "/events/ingest/batch", batch), http.StatusUnauthorized)
	h := signed(testSecret, "batch-1", time.Now(), batch)
	r := s.do(http.MethodPost, "/events/ingest/batch", batch, h...)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	items := fields(t, r)["items"].([]any)
	require.Equal(t, "batch-1/0", items[0].(map[string]any)["idempotency_key"])
	require.Equal(t, "batch-1/1", items[1].(map[string]any)["idempotency_key"])

	r = s.do(http.MethodPost, "/events/ingest/batch", batch, h...)
	require.Equal(t, http.StatusOK, r.status)
	for _, item := range fields(t, r)["items"].([]any) {
		require.Equal(t, true, item.(map[string]any)["duplicate"], "a replayed batch is all duplicates")
	}
	require.EqualValues(t, 2, s.xlen())
}
