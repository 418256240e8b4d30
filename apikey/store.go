package apikey

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Limits checked before a write; the table's CHECKs hold them too.
const (
	nameLenMax = 100
	// bootstrapKeyLenMin keeps an operator's own key as hard to guess as a
	// generated one is likely to be.
	bootstrapKeyLenMin = 32
)

const (
	sqlStateUniqueViolation = "23505"
	sqlStateCheckViolation  = "23514"
)

// Store reads and writes api_keys. It never sees a secret it could keep:
// only hashes go to the database.
type Store struct{ pool *pgxpool.Pool }

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// CreateParams describes a new key.
type CreateParams struct {
	Name   string
	Scopes []string
	// RateLimit is events per second for the key; 0 means the server's default.
	RateLimit float64
}

// Create makes a key and returns it with the whole secret key, which is
// shown once: only its hash is stored. Invalid params wrap ErrInvalid.
func (s *Store) Create(ctx context.Context, p CreateParams) (Key, string, error) {
	scopes, err := checkKey(p.Name, p.Scopes)
	if err != nil {
		return Key{}, "", err
	}
	if p.RateLimit < 0 || math.IsNaN(p.RateLimit) || math.IsInf(p.RateLimit, 0) {
		return Key{}, "", fmt.Errorf("%w: rate limit %v: want a finite number ≥ 0 (0 = server default)", ErrInvalid, p.RateLimit)
	}
	id, key, err := Generate()
	if err != nil {
		return Key{}, "", err
	}
	var rate *float64
	if p.RateLimit > 0 {
		rate = &p.RateLimit
	}
	hash := Hash(key)
	k, err := scanKey(s.pool.QueryRow(ctx, `INSERT INTO api_keys (id, name, scopes, secret_sha256, rate_limit)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+columns, id, p.Name, scopes, hash[:], rate))
	if err != nil {
		return Key{}, "", fmt.Errorf("create api key %q: %w", p.Name, translate(err))
	}
	return k, key, nil
}

// ImportParams describes a key set by the operator (DAYBOOK_BOOTSTRAP_KEY).
type ImportParams struct {
	Key    string
	Name   string
	Scopes []string
}

// Import stores an operator's key under IDOf(key), once: importing the same
// key again returns the stored row and created=false, whether or not it was
// revoked since. A different key already under that id is an error wrapping
// ErrBootstrapMismatch; a revoked row is never re-opened.
func (s *Store) Import(ctx context.Context, p ImportParams) (Key, bool, error) {
	if len(p.Key) < bootstrapKeyLenMin {
		return Key{}, false, fmt.Errorf("%w: bootstrap key has %d bytes; want at least %d", ErrInvalid, len(p.Key), bootstrapKeyLenMin)
	}
	for i := range len(p.Key) {
		if c := p.Key[i]; c <= ' ' || c > '~' {
			return Key{}, false, fmt.Errorf("%w: bootstrap key byte %d is not printable ASCII or is a space", ErrInvalid, i)
		}
	}
	scopes, err := checkKey(p.Name, p.Scopes)
	if err != nil {
		return Key{}, false, err
	}
	id, hash := IDOf(p.Key), Hash(p.Key)
	k, err := scanKey(s.pool.QueryRow(ctx, `INSERT INTO api_keys (id, name, scopes, secret_sha256)
		VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING `+columns, id, p.Name, scopes, hash[:]))
	switch {
	case err == nil:
		return k, true, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return Key{}, false, fmt.Errorf("import api key %s: %w", id, translate(err))
	}
	// The id is taken (perhaps by a server starting at the same moment).
	var stored []byte
	k, err = scanKey(s.pool.QueryRow(ctx, `SELECT `+columns+`, secret_sha256 FROM api_keys WHERE id = $1`, id), &stored)
	if err != nil {
		return Key{}, false, fmt.Errorf("import api key %s: %w", id, translate(err))
	}
	if subtle.ConstantTimeCompare(stored, hash[:]) != 1 {
		if k.RevokedAt != nil {
			return Key{}, false, fmt.Errorf("%w: a different key, revoked, is stored under id %s and is never re-opened; unset DAYBOOK_BOOTSTRAP_KEY and use `daybook keys create`",
				ErrBootstrapMismatch, id)
		}
		return Key{}, false, fmt.Errorf("%w: a different key is stored under id %s; revoke it (`daybook keys revoke %s`) or unset DAYBOOK_BOOTSTRAP_KEY",
			ErrBootstrapMismatch, id, id)
	}
	return k, false, nil
}

// checkKey checks what Create and Import share and returns the scopes in canonical order.
func checkKey(name string, scopes []string) ([]string, error) {
	switch {
	case name == "" || len(name) > nameLenMax:
		return nil, fmt.Errorf("%w: name has %d bytes; want 1 to %d", ErrInvalid, len(name), nameLenMax)
	case !utf8.ValidString(name):
		return nil, fmt.Errorf("%w: name is not valid UTF-8", ErrInvalid)
	case strings.IndexByte(name, 0) >= 0:
		return nil, fmt.Errorf("%w: name contains a NUL byte", ErrInvalid)
	}
	return canonicalScopes(scopes)
}

// List returns every key, revoked ones included, oldest first.
func (s *Store) List(ctx context.Context) ([]Key, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

// Get returns one key; an unknown id is ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Key, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM api_keys WHERE id = $1`, id))
	if err != nil {
		return Key{}, fmt.Errorf("get api key %s: %w", id, translate(err))
	}
	return k, nil
}

// Revoke marks a key revoked and returns it. Revoking it again keeps the
// first time. An unknown id is ErrNotFound.
func (s *Store) Revoke(ctx context.Context, id string) (Key, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
		WHERE id = $1 RETURNING `+columns, id))
	if err != nil {
		return Key{}, fmt.Errorf("revoke api key %s: %w", id, translate(err))
	}
	return k, nil
}

// Count returns how many keys were ever created, revoked ones included.
func (s *Store) Count(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM api_keys`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count api keys: %w", err)
	}
	return n, nil
}

// MarkUsed moves last_used_at of ids forward to at, never back, in one statement.
func (s *Store) MarkUsed(ctx context.Context, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `UPDATE api_keys SET last_used_at = greatest(last_used_at, $2)
		WHERE id = ANY($1)`, ids, at); err != nil {
		return fmt.Errorf("mark %d api key(s) used: %w", len(ids), err)
	}
	return nil
}

// stored is a key with its hash, as the keyring holds it.
type stored struct {
	key  Key
	hash [32]byte
}

// all returns every key with its hash, for the keyring.
func (s *Store) all(ctx context.Context) ([]stored, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+columns+`, secret_sha256 FROM api_keys`)
	if err != nil {
		return nil, fmt.Errorf("load api keys: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stored, error) {
		var hash []byte
		k, err := scanKey(r, &hash)
		if err != nil {
			return stored{}, err
		}
		if len(hash) != 32 { // the table's CHECK holds this; a short hash would never match
			return stored{}, fmt.Errorf("api key %s: hash has %d bytes", k.ID, len(hash))
		}
		return stored{key: k, hash: [32]byte(hash)}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("load api keys: %w", err)
	}
	return out, nil
}

const columns = `id, name, scopes, rate_limit, created_at, last_used_at, revoked_at`

// scanKey reads columns, then any extra destinations.
func scanKey(row pgx.Row, extra ...any) (Key, error) {
	var (
		k    Key
		rate *float64
	)
	dest := append([]any{&k.ID, &k.Name, &k.Scopes, &rate, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Key{}, err
	}
	if rate != nil {
		k.RateLimit = *rate
	}
	return k, nil
}

// translate maps driver errors to the package's.
func translate(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case errors.As(err, &pgErr) && (pgErr.Code == sqlStateCheckViolation || pgErr.Code == sqlStateUniqueViolation):
		return fmt.Errorf("%w: %s violated", ErrInvalid, pgErr.ConstraintName)
	}
	return err
}
