package webhook_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/webhook"
)

// The specification's published test vector.
const (
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// at is a clock stopped at t.
func at(t time.Time) func() time.Time { return func() time.Time { return t } }

func vectorHeaders() webhook.Headers {
	return webhook.Headers{ID: vectorID, Timestamp: strconv.Itoa(vectorTimestamp), Signature: vectorSignature}
}

func newVerifier(t *testing.T, csv string, now time.Time) *webhook.Verifier {
	t.Helper()
	v, err := webhook.NewVerifier(csv, at(now))
	require.NoError(t, err)
	return v
}

func TestSign_ReproducesTheSpecificationTestVector(t *testing.T) {
	t.Parallel()
	secrets, err := webhook.ParseSecrets(vectorSecret)
	require.NoError(t, err)
	got := webhook.Sign(secrets[0], vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	require.Equal(t, vectorSignature, got)
}

func TestSign_WithAnEmptySecretSignsNothing(t *testing.T) {
	t.Parallel()
	require.Empty(t, webhook.Sign(nil, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody)))
}

func TestVerify_AcceptsTheSpecificationTestVector(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, vectorSecret, time.Unix(vectorTimestamp, 0))
	require.NoError(t, v.Verify(vectorHeaders(), []byte(vectorBody)))
}

func TestVerify_DefaultsToTheWallClock(t *testing.T) {
	t.Parallel()
	csv, key := secretOf(3, 32)
	v, err := webhook.NewVerifier(csv+","+vectorSecret, nil)
	require.NoError(t, err)
	now := time.Now()
	h := webhook.Headers{ID: "msg_1", Timestamp: strconv.FormatInt(now.Unix(), 10), Signature: webhook.Sign(key, "msg_1", now, []byte("{}"))}
	require.NoError(t, v.Verify(h, []byte("{}")))
	require.ErrorIs(t, v.Verify(vectorHeaders(), []byte(vectorBody)), webhook.ErrTimestampOutOfRange, "signed in 2021")
}

func TestVerify_AcceptsEitherSecretDuringRotation(t *testing.T) {
	t.Parallel()
	oldCSV, oldKey := secretOf(1, 32)
	newCSV, newKey := secretOf(100, 32)
	now := time.Unix(vectorTimestamp, 0)
	v := newVerifier(t, oldCSV+","+newCSV, now)
	body := []byte(`{"n":1}`)
	for _, key := range [][]byte{oldKey, newKey} {
		h := webhook.Headers{ID: "msg_1", Timestamp: strconv.Itoa(vectorTimestamp), Signature: webhook.Sign(key, "msg_1", now, body)}
		require.NoError(t, v.Verify(h, body))
	}
	require.ErrorIs(t, newVerifier(t, oldCSV, now).Verify(webhook.Headers{
		ID: "msg_1", Timestamp: strconv.Itoa(vectorTimestamp), Signature: webhook.Sign(newKey, "msg_1", now, body),
	}, body), webhook.ErrNoMatchingSignature)
}

func TestVerify_AcceptsAHeaderWhoseSecondSignatureMatches(t *testing.T) {
	t.Parallel()
	otherCSV, otherKey := secretOf(1, 32)
	v := newVerifier(t, vectorSecret, time.Unix(vectorTimestamp, 0))
	h := vectorHeaders()
	h.Signature = webhook.Sign(otherKey, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody)) + " " + vectorSignature
	require.NoError(t, v.Verify(h, []byte(vectorBody)))
	require.ErrorIs(t, newVerifier(t, otherCSV+","+vectorSecret, time.Unix(vectorTimestamp, 0)).Verify(h, []byte("{}")),
		webhook.ErrNoMatchingSignature)
}

func TestVerify_RefusesAnythingSignedDifferently(t *testing.T) {
	t.Parallel()
	otherCSV, _ := secretOf(1, 32)
	now := time.Unix(vectorTimestamp, 0)
	v := newVerifier(t, vectorSecret, now)
	body := []byte(vectorBody)

	require.ErrorIs(t, newVerifier(t, otherCSV, now).Verify(vectorHeaders(), body), webhook.ErrNoMatchingSignature, "wrong secret")
	for i := range body {
		changed := []byte(vectorBody)
		changed[i] ^= 1
		require.ErrorIs(t, v.Verify(vectorHeaders(), changed), webhook.ErrNoMatchingSignature, "body byte %d", i)
	}
	require.ErrorIs(t, v.Verify(vectorHeaders(), append([]byte(vectorBody), ' ')), webhook.ErrNoMatchingSignature, "body longer")
	h := vectorHeaders()
	h.ID = vectorID[:len(vectorID)-1] + "l"
	require.ErrorIs(t, v.Verify(h, body), webhook.ErrNoMatchingSignature, "id changed")
	h = vectorHeaders()
	h.Timestamp = strconv.Itoa(vectorTimestamp + 1)
	require.ErrorIs(t, v.Verify(h, body), webhook.ErrNoMatchingSignature, "timestamp changed")
}

func TestVerify_AcceptsTimestampsUpToFiveMinutesEitherWay(t *testing.T) {
	t.Parallel()
	csv, key := secretOf(1, 32)
	now := time.Unix(vectorTimestamp, 0)
	v := newVerifier(t, csv, now)
	body := []byte(`{}`)
	tests := []struct {
		offset time.Duration
		ok     bool
	}{
		{-webhook.Tolerance, true},
		{-webhook.Tolerance - time.Second, false},
		{webhook.Tolerance, true},
		{webhook.Tolerance + time.Second, false},
		{0, true},
		{-24 * time.Hour, false},
	}
	for _, tt := range tests {
		ts := now.Add(tt.offset)
		h := webhook.Headers{ID: "msg_1", Timestamp: strconv.FormatInt(ts.Unix(), 10), Signature: webhook.Sign(key, "msg_1", ts, body)}
		err := v.Verify(h, body)
		if tt.ok {
			require.NoError(t, err, "offset %s", tt.offset)
		} else {
			require.ErrorIs(t, err, webhook.ErrTimestampOutOfRange, "offset %s", tt.offset)
		}
	}
}

func TestVerify_RefusesAMissingHeaderNamingIt(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, vectorSecret, time.Unix(vectorTimestamp, 0))
	tests := []struct {
		name  string
		clear func(*webhook.Headers)
	}{
		{"webhook-id", func(h *webhook.Headers) { h.ID = "" }},
		{"webhook-timestamp", func(h *webhook.Headers) { h.Timestamp = "" }},
		{"webhook-signature", func(h *webhook.Headers) { h.Signature = "" }},
	}
	for _, tt := range tests {
		h := vectorHeaders()
		tt.clear(&h)
		err := v.Verify(h, []byte(vectorBody))
		require.ErrorIs(t, err, webhook.ErrMissingHeader)
		require.EqualError(t, err, "verify webhook: "+tt.name+": webhook header is missing")
	}
}

func TestVerify_RefusesTimestampsThatAreNotPlainUnixSeconds(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, vectorSecret, time.Unix(vectorTimestamp, 0))
	for _, ts := range []string{
		"abc", "+1614265330", "-1614265330", "01614265330", "1614265330.0", " 1614265330", "1614265330 ",
		"1.6e9", "0x603830f2", "99999999999999999999", "9223372036854775808", "１614265330",
	} {
		h := vectorHeaders()
		h.Timestamp = ts
		require.ErrorIs(t, v.Verify(h, []byte(vectorBody)), webhook.ErrBadTimestamp, "%q", ts)
	}
	for _, ts := range []string{"0", "9223372036854775807"} {
		h := vectorHeaders()
		h.Timestamp = ts
		require.ErrorIs(t, v.Verify(h, []byte(vectorBody)), webhook.ErrTimestampOutOfRange, "%q", ts)
	}
}

func TestVerify_FindsNoSignatureInGarbage(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, vectorSecret, time.Unix(vectorTimestamp, 0))
	b64 := strings.TrimPrefix(vectorSignature, "v1,")
	for _, sig := range []string{
		"v1", "v1,", ",", ",,,", "v1,not base64", "v1 " + b64, b64,
		"v1a," + b64, "v2," + b64, "V1," + b64, "v1," + b64 + ",extra", "v1," + b64 + "=", "v1," + strings.ToLower(b64),
		"v1,,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "v1," + b64[:len(b64)-1], "\x00", "v1,\xff\xfe",
	} {
		h := vectorHeaders()
		h.Signature = sig
		require.ErrorIs(t, v.Verify(h, []byte(vectorBody)), webhook.ErrNoMatchingSignature, "%q", sig)
	}
}

func TestVerify_FindsTheSignatureAmongOtherEntriesAndBlanks(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, vectorSecret, time.Unix(vectorTimestamp, 0))
	h := vectorHeaders()
	h.Signature = ",,, v1,not,base64  v1a,abc\t" + vectorSignature + " v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
	require.NoError(t, v.Verify(h, []byte(vectorBody)))
}

func TestVerify_ConsidersOnlyTheFirstTenEntries(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, vectorSecret, time.Unix(vectorTimestamp, 0))
	h := vectorHeaders()
	h.Signature = strings.Repeat("v1a,x ", 9) + vectorSignature
	require.NoError(t, v.Verify(h, []byte(vectorBody)))
	h.Signature = strings.Repeat("v1a,x ", 10) + vectorSignature
	require.ErrorIs(t, v.Verify(h, []byte(vectorBody)), webhook.ErrNoMatchingSignature)
}

func TestVerify_RefusesOversizedHeaders(t *testing.T) {
	t.Parallel()
	now := time.Unix(vectorTimestamp, 0)
	csv, key := secretOf(1, 32)
	v := newVerifier(t, csv, now)
	body := []byte(`{}`)

	id := strings.Repeat("i", 255)
	h := webhook.Headers{ID: id, Timestamp: strconv.Itoa(vectorTimestamp), Signature: webhook.Sign(key, id, now, body)}
	require.NoError(t, v.Verify(h, body))
	id += "i"
	h = webhook.Headers{ID: id, Timestamp: strconv.Itoa(vectorTimestamp), Signature: webhook.Sign(key, id, now, body)}
	require.ErrorIs(t, v.Verify(h, body), webhook.ErrBadHeader)

	sig := webhook.Sign(key, "msg_1", now, body)
	h = webhook.Headers{ID: "msg_1", Timestamp: strconv.Itoa(vectorTimestamp)}
	h.Signature = sig + strings.Repeat(" ", 4<<10-len(sig))
	require.NoError(t, v.Verify(h, body))
	h.Signature += " "
	require.ErrorIs(t, v.Verify(h, body), webhook.ErrBadHeader)
}
