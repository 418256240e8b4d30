package webhook

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

const (
	secretPrefix = "whsec_"
	// secretBytesMin keeps a typo or a placeholder from becoming a key; the
	// specification's own test secret has 24 bytes.
	secretBytesMin = 16
	// secretsMax bounds the HMACs one request may cost: rotation needs two.
	secretsMax = 10
)

// ParseSecrets parses comma-separated secrets, each whsec_ followed by the
// standard base64 (with padding) of at least 16 bytes; blanks around each
// are trimmed. An error names the secret by position, never by its text.
//
// Only the canonical base64 of the key is accepted, so that one key has
// exactly one spelling: Go's decoder would also take line breaks inside the
// text and non-zero padding bits.
func ParseSecrets(csv string) ([][]byte, error) {
	if strings.TrimSpace(csv) == "" {
		return nil, errors.New("webhook secrets: none given")
	}
	parts := strings.Split(csv, ",")
	if len(parts) > secretsMax {
		return nil, fmt.Errorf("webhook secrets: %d given, at most %d", len(parts), secretsMax)
	}
	secrets := make([][]byte, len(parts))
	for i, part := range parts {
		key, err := parseSecret(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("webhook secret %d of %d: %w", i+1, len(parts), err)
		}
		secrets[i] = key
	}
	return secrets, nil
}

func parseSecret(s string) ([]byte, error) {
	encoded, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return nil, errors.New("does not start with " + secretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	// Decoding errors say only at which byte; they quote nothing.
	if err != nil {
		return nil, fmt.Errorf("is not standard base64: %w", err)
	}
	if base64.StdEncoding.EncodeToString(key) != encoded {
		return nil, errors.New("is not canonical standard base64")
	}
	if len(key) < secretBytesMin {
		return nil, fmt.Errorf("has %d bytes, fewer than %d", len(key), secretBytesMin)
	}
	return key, nil
}
