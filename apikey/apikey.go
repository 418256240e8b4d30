// Package apikey owns API keys: their format, the hashed store (api_keys),
// and the in-memory keyring that servers authenticate against. It imports
// pgx and nothing of HTTP: mapping its errors to responses is the API's job.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Scopes a key may be granted. The migration's CHECK on api_keys.scopes lists
// the same five.
const (
	ScopeEventsWrite = "events:write"
	ScopeEventsRead  = "events:read"
	ScopeLedgerRead  = "ledger:read"
	ScopeLedgerWrite = "ledger:write"
	ScopeAdmin       = "admin"
)

// Scopes returns every scope in canonical order.
func Scopes() []string {
	return []string{ScopeEventsWrite, ScopeEventsRead, ScopeLedgerRead, ScopeLedgerWrite, ScopeAdmin}
}

// ParseScopes reads a comma-separated list such as "events:write, ledger:read".
// The result is deduplicated and in canonical order; an unknown scope or an
// empty list is an error wrapping ErrInvalid.
func ParseScopes(csv string) ([]string, error) {
	var scopes []string
	for s := range strings.SplitSeq(csv, ",") {
		if s = strings.TrimSpace(s); s != "" {
			scopes = append(scopes, s)
		}
	}
	return canonicalScopes(scopes)
}

// canonicalScopes checks scopes and returns them deduplicated, in canonical order.
func canonicalScopes(scopes []string) ([]string, error) {
	all := Scopes()
	for _, s := range scopes {
		if !slices.Contains(all, s) {
			return nil, fmt.Errorf("%w: unknown scope %q; want some of %s", ErrInvalid, s, strings.Join(all, ", "))
		}
	}
	out := slices.DeleteFunc(all, func(s string) bool { return !slices.Contains(scopes, s) })
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no scopes; want one or more of %s", ErrInvalid, strings.Join(all, ", "))
	}
	return out, nil
}

// Key format: prefix, id, '_', secret. The id is the key's public part, the
// row's primary key; the secret carries 256 random bits.
const (
	prefix    = "dbk_"
	idLen     = 12
	secretLen = 43 // base64url of 32 bytes, unpadded
	keyLen    = len(prefix) + idLen + 1 + secretLen

	idAlphabet  = "abcdefghijklmnopqrstuvwxyz234567"
	secretBytes = 32
)

// BootstrapID is the id of every key that is not of the dbk_ format: the one
// an operator sets by environment before any key exists.
const BootstrapID = "bootstrap"

// Generate returns a new key and its id. The key is dbk_<id>_<secret>: 12
// characters of lowercase base32 and 32 bytes of base64url, both from
// crypto/rand.
func Generate() (id, key string, err error) {
	return generate(rand.Reader)
}

func generate(random io.Reader) (id, key string, err error) {
	var b [idLen + secretBytes]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", "", fmt.Errorf("generate api key: %w", err)
	}
	ids := make([]byte, idLen)
	for i, c := range b[:idLen] {
		ids[i] = idAlphabet[c&31] // 256 is a multiple of 32: no bias
	}
	id = string(ids)
	return id, prefix + id + "_" + base64.RawURLEncoding.EncodeToString(b[idLen:]), nil
}

// Hash is the SHA-256 of the whole key, the only form in which a key is stored.
func Hash(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// ParseID returns the id of a well-formed dbk_ key.
func ParseID(key string) (id string, ok bool) {
	if len(key) != keyLen || !strings.HasPrefix(key, prefix) || key[len(prefix)+idLen] != '_' {
		return "", false
	}
	id, secret := key[len(prefix):len(prefix)+idLen], key[len(prefix)+idLen+1:]
	for i := range len(id) {
		if strings.IndexByte(idAlphabet, id[i]) < 0 {
			return "", false
		}
	}
	for i := range len(secret) {
		if c := secret[i]; !isAlnum(c) && c != '-' && c != '_' {
			return "", false
		}
	}
	return id, true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// IDOf returns the id a key is stored under: ParseID's, or BootstrapID.
func IDOf(key string) string {
	if id, ok := ParseID(key); ok {
		return id
	}
	return BootstrapID
}

// Key is a stored key without its secret.
type Key struct {
	ID     string
	Name   string
	Scopes []string
	// RateLimit is events per second for this key; 0 means the server's default.
	RateLimit  float64
	CreatedAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// Has reports whether k was granted scope. No scope implies another: admin
// alone does not grant events:write.
func (k Key) Has(scope string) bool { return slices.Contains(k.Scopes, scope) }

// clone returns a copy that shares no memory with k.
func (k Key) clone() Key {
	k.Scopes = slices.Clone(k.Scopes)
	for _, t := range []**time.Time{&k.LastUsedAt, &k.RevokedAt} {
		if *t != nil {
			c := **t
			*t = &c
		}
	}
	return k
}

// Errors of the store.
var (
	ErrInvalid  = errors.New("invalid api key")
	ErrNotFound = errors.New("api key not found")
	// ErrBootstrapMismatch means another key is already stored under the
	// bootstrap key's id.
	ErrBootstrapMismatch = errors.New("bootstrap api key does not match the stored one")
)

// Errors of Authenticate.
var (
	ErrMissing = errors.New("no api key")
	ErrUnknown = errors.New("unknown api key")
	ErrRevoked = errors.New("api key revoked")
)
