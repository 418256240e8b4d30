package webhook_test

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/webhook"
)

// FuzzVerify checks, for any id, timestamp, body and signature header, that
// Verify does not panic; that a fuzzed header verifies only when it carries,
// among its first 10 entries, the very signature Sign makes; that what Sign
// makes always verifies when the id and timestamp are acceptable; and that
// changing any byte of the body then makes it fail.
func FuzzVerify(f *testing.F) {
	now := time.Unix(vectorTimestamp, 0)
	rotatedCSV, rotatedKey := secretOf(100, 32)
	secrets, err := webhook.ParseSecrets(vectorSecret + "," + rotatedCSV)
	require.NoError(f, err)
	v, err := webhook.NewVerifier(vectorSecret+","+rotatedCSV, at(now))
	require.NoError(f, err)
	require.Equal(f, rotatedKey, secrets[1])

	f.Fuzz(func(t *testing.T, id, timestamp string, skew int64, body []byte, header string, flipAt uint16, flipMask byte) {
		// A fuzzed header, with a fuzzed timestamp.
		err := v.Verify(webhook.Headers{ID: id, Timestamp: timestamp, Signature: header}, body)
		if err == nil {
			sec, perr := strconv.ParseInt(timestamp, 10, 64)
			require.NoError(t, perr)
			require.Equal(t, strconv.FormatInt(sec, 10), timestamp, "only the plain spelling verifies")
			require.LessOrEqual(t, max(sec-now.Unix(), now.Unix()-sec), int64(webhook.Tolerance/time.Second))
			require.True(t, carriesSignature(header, secrets, id, time.Unix(sec, 0), body),
				"header %q verified without a signature Sign makes", header)
		}

		// A header Sign makes, at now+skew.
		sec := now.Unix() + skew
		ts := strconv.FormatInt(sec, 10)
		key := secrets[int(uint64(skew)%2)]
		h := webhook.Headers{ID: id, Timestamp: ts, Signature: webhook.Sign(key, id, time.Unix(sec, 0), body)}
		err = v.Verify(h, body)
		switch {
		case id == "":
			require.ErrorIs(t, err, webhook.ErrMissingHeader)
			return
		case len(id) > 255:
			require.ErrorIs(t, err, webhook.ErrBadHeader)
			return
		case sec < 0:
			require.ErrorIs(t, err, webhook.ErrBadTimestamp)
			return
		case sec-now.Unix() > 300 || now.Unix()-sec > 300:
			require.ErrorIs(t, err, webhook.ErrTimestampOutOfRange)
			return
		}
		require.NoError(t, err)

		if len(body) == 0 {
			return
		}
		flipped := slices.Clone(body)
		flipped[int(flipAt)%len(flipped)] ^= max(flipMask, 1)
		require.ErrorIs(t, v.Verify(h, flipped), webhook.ErrNoMatchingSignature)
	})
}

// carriesSignature says whether one of the first 10 entries of header is
// what Sign makes under one of secrets.
func carriesSignature(header string, secrets [][]byte, id string, ts time.Time, body []byte) bool {
	entries := strings.Fields(header)
	for _, entry := range entries[:min(len(entries), 10)] {
		for _, secret := range secrets {
			if entry == webhook.Sign(secret, id, ts, body) {
				return true
			}
		}
	}
	return false
}

// FuzzParseSecrets checks that ParseSecrets does not panic, that every secret
// it accepts has 16 bytes or more and is written exactly as its canonical
// whsec_ form, and that a refusal does not quote a secret.
func FuzzParseSecrets(f *testing.F) {
	f.Fuzz(func(t *testing.T, csv string) {
		secrets, err := webhook.ParseSecrets(csv)
		parts := strings.Split(csv, ",")
		if err == nil {
			require.Len(t, secrets, len(parts))
			for i, secret := range secrets {
				require.GreaterOrEqual(t, len(secret), 16)
				require.Equal(t, strings.TrimSpace(parts[i]), "whsec_"+base64.StdEncoding.EncodeToString(secret))
			}
			_, err := webhook.NewVerifier(csv, nil)
			require.NoError(t, err)
			return
		}
		require.Nil(t, secrets)
		for _, part := range parts {
			// Long runs of the base64 alphabet do not occur in the messages.
			text := strings.TrimPrefix(strings.TrimSpace(part), "whsec_")
			if len(text) >= 12 && strings.Trim(text, base64Alphabet) == "" {
				require.NotContains(t, err.Error(), text)
			}
		}
	})
}

const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
