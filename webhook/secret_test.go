package webhook_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/webhook"
)

// vectorSecret is the secret of the specification's published test vector.
const vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// secretOf is the whsec_ form of n bytes counting up from first.
func secretOf(first byte, n int) (string, []byte) {
	key := make([]byte, n)
	for i := range key {
		key[i] = first + byte(i)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key), key
}

func TestParseSecrets_ReadsEachSecretInOrder(t *testing.T) {
	t.Parallel()
	second, secondKey := secretOf(1, 32)
	got, err := webhook.ParseSecrets(" " + vectorSecret + " ,\t" + second + "\n")
	require.NoError(t, err)
	vectorKey, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(vectorSecret, "whsec_"))
	require.NoError(t, err)
	require.Len(t, vectorKey, 24)
	require.Equal(t, [][]byte{vectorKey, secondKey}, got)
}

func TestParseSecrets_AcceptsSixteenBytesAndNoFewer(t *testing.T) {
	t.Parallel()
	sixteen, key := secretOf(7, 16)
	got, err := webhook.ParseSecrets(sixteen)
	require.NoError(t, err)
	require.Equal(t, [][]byte{key}, got)

	fifteen, _ := secretOf(7, 15)
	_, err = webhook.ParseSecrets(fifteen)
	require.EqualError(t, err, "webhook secret 1 of 1: has 15 bytes, fewer than 16")
}

func TestParseSecrets_RefusesBadSecretsNamingOnlyTheirPosition(t *testing.T) {
	t.Parallel()
	good, _ := secretOf(1, 32)
	tests := []struct {
		name, csv, err string
	}{
		{"empty", "", "webhook secrets: none given"},
		{"blank", "  ", "webhook secrets: none given"},
		{"no prefix", good + "," + strings.TrimPrefix(vectorSecret, "whsec_"), "webhook secret 2 of 2: does not start with whsec_"},
		{"empty entry", good + ",," + good, "webhook secret 2 of 3: does not start with whsec_"},
		{"trailing comma", good + ",", "webhook secret 2 of 2: does not start with whsec_"},
		{"URL base64", "whsec_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_", "webhook secret 1 of 1: is not standard base64: illegal base64 data at input byte 0"},
		{"missing padding", "whsec_AAECAwQFBgcICQoLDA0ODxAREhM", "webhook secret 1 of 1: is not standard base64: illegal base64 data at input byte 24"},
		{"line break inside", "whsec_MfKQ9r8GKYqrTwjU\nPD8ILPZIo2LaLaSw", "webhook secret 1 of 1: is not canonical standard base64"},
		{"padding bits set", "whsec_AAECAwQFBgcICQoLDA0ODxAREhN=", "webhook secret 1 of 1: is not canonical standard base64"},
		{"too many", strings.Repeat(good+",", 10) + good, "webhook secrets: 11 given, at most 10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := webhook.ParseSecrets(tt.csv)
			require.EqualError(t, err, tt.err)
			require.Nil(t, got)
		})
	}
}

func TestNewVerifier_RefusesWhatParseSecretsRefuses(t *testing.T) {
	t.Parallel()
	v, err := webhook.NewVerifier("whsec_short", nil)
	require.EqualError(t, err, "webhook secret 1 of 1: is not standard base64: illegal base64 data at input byte 4")
	require.Nil(t, v)
}
