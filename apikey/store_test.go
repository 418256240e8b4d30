package apikey_test

import (
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/internal/testdb"
)

func newStore(t *testing.T) (*apikey.Store, *pgxpool.Pool) {
	t.Helper()
	pool := testdb.New(t)
	return apikey.NewStore(pool), pool
}

func mustCreate(t *testing.T, s *apikey.Store, name string, scopes ...string) (apikey.Key, string) {
	t.Helper()
	k, key, err := s.Create(t.Context(), apikey.CreateParams{Name: name, Scopes: scopes})
	require.NoError(t, err)
	return k, key
}

// bootstrapKey is long enough and printable, but not of the dbk_ format.
const bootstrapKey = "operator-chosen-bootstrap-key-0123456789"

func TestCreate_StoresOnlyTheHashOfTheKey(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	k, key, err := s.Create(ctx, apikey.CreateParams{
		Name: "billing", Scopes: []string{apikey.ScopeLedgerRead, apikey.ScopeEventsWrite}, RateLimit: 12.5,
	})
	require.NoError(t, err)
	require.Equal(t, k.ID, apikey.IDOf(key))
	require.Equal(t, "billing", k.Name)
	require.Equal(t, []string{apikey.ScopeEventsWrite, apikey.ScopeLedgerRead}, k.Scopes, "canonical order")
	require.Equal(t, 12.5, k.RateLimit)
	require.WithinDuration(t, time.Now(), k.CreatedAt, time.Minute)
	require.Nil(t, k.LastUsedAt)
	require.Nil(t, k.RevokedAt)

	secret := key[len("dbk_"+k.ID+"_"):]
	var row string
	var hash []byte
	require.NoError(t, pool.QueryRow(ctx, `SELECT t::text, t.secret_sha256 FROM api_keys t WHERE id = $1`, k.ID).Scan(&row, &hash))
	require.NotContains(t, row, secret)
	require.NotContains(t, string(hash), secret)
	want := apikey.Hash(key)
	require.Equal(t, want[:], hash)
	secretOnly := sha256.Sum256([]byte(secret))
	require.NotEqual(t, secretOnly[:], hash, "the hash covers the whole key, not the secret alone")

	got, err := s.Get(ctx, k.ID)
	require.NoError(t, err)
	require.Equal(t, k, got)
}

func TestCreate_WithoutRateLimitStoresNullForTheServerDefault(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	k, _ := mustCreate(t, s, "default rate", apikey.ScopeEventsRead)
	require.Zero(t, k.RateLimit)
	var isNull bool
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT rate_limit IS NULL FROM api_keys WHERE id = $1`, k.ID).Scan(&isNull))
	require.True(t, isNull)
}

func TestCreate_RefusesInvalidParamsAndStoresNothing(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	scopes := []string{apikey.ScopeEventsWrite}
	for name, tc := range map[string]struct {
		params apikey.CreateParams
		says   string
	}{
		"unknown scope": {apikey.CreateParams{Name: "n", Scopes: []string{"events:write", "events:delete"}}, `"events:delete"`},
		"no scopes":     {apikey.CreateParams{Name: "n"}, "no scopes"},
		"empty name":    {apikey.CreateParams{Scopes: scopes}, "name has 0 bytes"},
		"long name":     {apikey.CreateParams{Name: strings.Repeat("x", 101), Scopes: scopes}, "name has 101 bytes"},
		"NUL in name":   {apikey.CreateParams{Name: "a\x00b", Scopes: scopes}, "NUL"},
		"invalid UTF-8": {apikey.CreateParams{Name: "a\xffb", Scopes: scopes}, "UTF-8"},
		"negative rate": {apikey.CreateParams{Name: "n", Scopes: scopes, RateLimit: -1}, "rate limit"},
	} {
		_, key, err := s.Create(ctx, tc.params)
		require.ErrorIs(t, err, apikey.ErrInvalid, name)
		require.ErrorContains(t, err, tc.says, name)
		require.Empty(t, key, name)
	}
	n, err := s.Count(ctx)
	require.NoError(t, err)
	require.Zero(t, n)

	_, _, err = s.Create(ctx, apikey.CreateParams{Name: strings.Repeat("é", 50), Scopes: scopes})
	require.NoError(t, err, "100 bytes is the limit")
}

func TestImport_StoresTheBootstrapKeyOnceUnderItsID(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	p := apikey.ImportParams{Key: bootstrapKey, Name: "bootstrap", Scopes: []string{apikey.ScopeAdmin}}

	k, created, err := s.Import(ctx, p)
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, apikey.BootstrapID, k.ID)
	require.Equal(t, []string{apikey.ScopeAdmin}, k.Scopes)

	again, created, err := s.Import(ctx, p)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, k, again)

	// A dbk_ key given by environment keeps its own id.
	id, generated, err := apikey.Generate()
	require.NoError(t, err)
	k, created, err = s.Import(ctx, apikey.ImportParams{Key: generated, Name: "from staging", Scopes: []string{apikey.ScopeEventsWrite}})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, id, k.ID)

	n, err := s.Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
}

func TestImport_RefusesADifferentKeyUnderTheSameIDEvenRevoked(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	scopes := []string{apikey.ScopeAdmin}
	_, _, err := s.Import(ctx, apikey.ImportParams{Key: bootstrapKey, Name: "bootstrap", Scopes: scopes})
	require.NoError(t, err)

	other := apikey.ImportParams{Key: bootstrapKey + "-rotated", Name: "bootstrap", Scopes: scopes}
	_, _, err = s.Import(ctx, other)
	require.ErrorIs(t, err, apikey.ErrBootstrapMismatch)
	require.ErrorContains(t, err, "daybook keys revoke bootstrap")
	require.ErrorContains(t, err, "DAYBOOK_BOOTSTRAP_KEY")

	revoked, err := s.Revoke(ctx, apikey.BootstrapID)
	require.NoError(t, err)
	_, _, err = s.Import(ctx, other)
	require.ErrorIs(t, err, apikey.ErrBootstrapMismatch)
	require.ErrorContains(t, err, "never re-opened")

	// The same key, revoked, stays revoked.
	k, created, err := s.Import(ctx, apikey.ImportParams{Key: bootstrapKey, Name: "bootstrap", Scopes: scopes})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, revoked.RevokedAt, k.RevokedAt)

	got, err := s.Get(ctx, apikey.BootstrapID)
	require.NoError(t, err)
	require.Equal(t, revoked, got)
}

func TestImport_RefusesAShortOrUnprintableKey(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	for _, key := range []string{
		"", strings.Repeat("k", 31), strings.Repeat("k", 31) + " ", strings.Repeat("k", 31) + "\t",
		strings.Repeat("k", 31) + "é",
	} {
		_, _, err := s.Import(t.Context(), apikey.ImportParams{Key: key, Name: "bootstrap", Scopes: []string{apikey.ScopeAdmin}})
		require.ErrorIs(t, err, apikey.ErrInvalid, "%q", key)
	}
	n, err := s.Count(t.Context())
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestRevoke_TwiceKeepsTheFirstTime(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	k, _ := mustCreate(t, s, "ci", apikey.ScopeEventsWrite)

	first, err := s.Revoke(ctx, k.ID)
	require.NoError(t, err)
	require.NotNil(t, first.RevokedAt)
	second, err := s.Revoke(ctx, k.ID)
	require.NoError(t, err)
	require.Equal(t, first, second)
}

func TestStore_UnknownIDIsErrNotFound(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	_, err := s.Revoke(t.Context(), "nosuchkey")
	require.ErrorIs(t, err, apikey.ErrNotFound)
	_, err = s.Get(t.Context(), "nosuchkey")
	require.ErrorIs(t, err, apikey.ErrNotFound)
}

func TestList_OldestFirstThenByIDRevokedIncluded(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	t0 := time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC)
	var ids []string
	for i, name := range []string{"c", "a", "b", "tie"} {
		k, _ := mustCreate(t, s, name, apikey.ScopeEventsRead)
		ids = append(ids, k.ID)
		at := t0.Add(time.Duration(min(i, 2)) * time.Second) // b and tie were created at the same time
		_, err := pool.Exec(ctx, `UPDATE api_keys SET created_at = $2 WHERE id = $1`, k.ID, at)
		require.NoError(t, err)
	}
	_, err := s.Revoke(ctx, ids[1])
	require.NoError(t, err)
	want := append([]string{}, ids...)
	if ids[3] < ids[2] {
		want[2], want[3] = ids[3], ids[2]
	}

	keys, err := s.List(ctx)
	require.NoError(t, err)
	var got []string
	for _, k := range keys {
		got = append(got, k.ID)
	}
	require.Equal(t, want, got)
	require.NotNil(t, keys[1].RevokedAt)
	require.Equal(t, "a", keys[1].Name)
}

func TestMarkUsed_MovesLastUseForwardOnly(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	a, _ := mustCreate(t, s, "a", apikey.ScopeEventsRead)
	b, _ := mustCreate(t, s, "b", apikey.ScopeEventsRead)
	c, _ := mustCreate(t, s, "c", apikey.ScopeEventsRead)
	noon := time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC)

	require.NoError(t, s.MarkUsed(ctx, []string{a.ID, b.ID}, noon))
	require.NoError(t, s.MarkUsed(ctx, []string{a.ID}, noon.Add(-time.Hour)))
	require.NoError(t, s.MarkUsed(ctx, nil, noon.Add(time.Hour)))

	for id, want := range map[string]*time.Time{a.ID: &noon, b.ID: &noon, c.ID: nil} {
		k, err := s.Get(ctx, id)
		require.NoError(t, err)
		if want == nil {
			require.Nil(t, k.LastUsedAt)
			continue
		}
		require.NotNil(t, k.LastUsedAt)
		require.True(t, want.Equal(*k.LastUsedAt), "%s: %s", id, k.LastUsedAt)
	}
}
