package apikey_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/internal/testdb"
)

// usedAt is the keyring's clock in these tests: last_used_at must equal it.
var usedAt = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func startKeyring(t *testing.T, s *apikey.Store, refresh time.Duration) *apikey.Keyring {
	t.Helper()
	kr, err := apikey.NewKeyring(s, apikey.KeyringConfig{
		Refresh: refresh,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:     func() time.Time { return usedAt },
	})
	require.NoError(t, err)
	require.NoError(t, kr.Start(t.Context()))
	t.Cleanup(kr.Stop) // before the pool closes: cleanups run last in, first out
	return kr
}

// hourly keeps the loop out of the way: these tests refresh by hand.
const hourly = time.Hour

func TestKeyring_AuthenticatesAKeyCreatedBeforeTheRefresh(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	kr := startKeyring(t, s, hourly)
	created, key, err := s.Create(t.Context(), apikey.CreateParams{
		Name: "ingest", Scopes: []string{apikey.ScopeEventsWrite}, RateLimit: 50,
	})
	require.NoError(t, err)

	_, err = kr.Authenticate(key)
	require.ErrorIs(t, err, apikey.ErrUnknown, "not loaded yet")
	require.NoError(t, kr.Refresh(t.Context()))
	got, err := kr.Authenticate(key)
	require.NoError(t, err)
	require.Equal(t, created, got)
	require.True(t, got.Has(apikey.ScopeEventsWrite))
}

func TestKeyring_RefusesUnknownMissingAndWrongSecretAlike(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	k, key := mustCreate(t, s, "ingest", apikey.ScopeEventsWrite)
	kr := startKeyring(t, s, hourly)
	_, unknown, err := apikey.Generate()
	require.NoError(t, err)
	_, imposter, err := apikey.Generate()
	require.NoError(t, err)
	sameID := "dbk_" + k.ID + imposter[len("dbk_")+12:]
	require.Equal(t, k.ID, apikey.IDOf(sameID))

	for name, tc := range map[string]struct {
		key  string
		want error
	}{
		"empty":                     {"", apikey.ErrMissing},
		"unknown id":                {unknown, apikey.ErrUnknown},
		"right id, wrong secret":    {sameID, apikey.ErrUnknown},
		"bootstrap, none stored":    {bootstrapKey, apikey.ErrUnknown},
		"the key with a byte extra": {key + "x", apikey.ErrUnknown},
	} {
		got, err := kr.Authenticate(tc.key)
		require.ErrorIs(t, err, tc.want, name)
		require.Zero(t, got, name)
	}
}

func TestKeyring_RefusesAKeyRevokedBeforeTheRefresh(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	k, key := mustCreate(t, s, "ingest", apikey.ScopeEventsWrite)
	kr := startKeyring(t, s, hourly)
	_, err := kr.Authenticate(key)
	require.NoError(t, err)

	_, err = s.Revoke(t.Context(), k.ID)
	require.NoError(t, err)
	require.NoError(t, kr.Refresh(t.Context()))
	_, err = kr.Authenticate(key)
	require.ErrorIs(t, err, apikey.ErrRevoked)
}

func TestKeyring_OpenOnlyWhileNoKeyWasEverCreated(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	kr := startKeyring(t, s, hourly)
	require.True(t, kr.Open())

	k, _ := mustCreate(t, s, "first", apikey.ScopeAdmin)
	require.NoError(t, kr.Refresh(t.Context()))
	require.False(t, kr.Open())

	_, err := s.Revoke(t.Context(), k.ID)
	require.NoError(t, err)
	require.NoError(t, kr.Refresh(t.Context()))
	require.False(t, kr.Open(), "revoking every key does not open the API")
}

func TestKeyring_NotStartedIsClosedAndKnowsNoKey(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	_, key := mustCreate(t, s, "ingest", apikey.ScopeEventsWrite)
	kr, err := apikey.NewKeyring(s, apikey.KeyringConfig{})
	require.NoError(t, err)
	require.False(t, kr.Open())
	_, err = kr.Authenticate(key)
	require.ErrorIs(t, err, apikey.ErrUnknown)
	kr.Stop() // before Start: nothing to stop
}

func TestKeyring_WritesLastUseAtTheRefreshAfterIt(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	used, key := mustCreate(t, s, "used", apikey.ScopeEventsWrite)
	idle, _ := mustCreate(t, s, "idle", apikey.ScopeEventsWrite)
	kr := startKeyring(t, s, hourly)

	for range 3 {
		_, err := kr.Authenticate(key)
		require.NoError(t, err)
	}
	got, err := s.Get(t.Context(), used.ID)
	require.NoError(t, err)
	require.Nil(t, got.LastUsedAt, "written at the refresh, not per request")

	require.NoError(t, kr.Refresh(t.Context()))
	got, err = s.Get(t.Context(), used.ID)
	require.NoError(t, err)
	require.NotNil(t, got.LastUsedAt)
	require.True(t, usedAt.Equal(*got.LastUsedAt), "last_used_at %s", got.LastUsedAt)
	got, err = s.Get(t.Context(), idle.ID)
	require.NoError(t, err)
	require.Nil(t, got.LastUsedAt)

	// The refresh reloaded the row it wrote.
	k, err := kr.Authenticate(key)
	require.NoError(t, err)
	require.NotNil(t, k.LastUsedAt)
	require.True(t, usedAt.Equal(*k.LastUsedAt))
}

func TestKeyring_LoopPicksUpANewKeyByItself(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	kr := startKeyring(t, s, 50*time.Millisecond)
	require.True(t, kr.Open())
	k, key := mustCreate(t, s, "late", apikey.ScopeEventsWrite)

	require.Eventually(t, func() bool {
		_, err := kr.Authenticate(key)
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	require.False(t, kr.Open())
	// and writes its use by itself too
	require.Eventually(t, func() bool {
		got, err := s.Get(t.Context(), k.ID)
		return err == nil && got.LastUsedAt != nil && usedAt.Equal(*got.LastUsedAt)
	}, 5*time.Second, 10*time.Millisecond)
}

func TestKeyring_RefreshErrorKeepsTheKeysLoadedBefore(t *testing.T) {
	t.Parallel()
	_, url := testdb.NewWithURL(t)
	pool, err := pgxpool.New(t.Context(), url)
	require.NoError(t, err)
	s := apikey.NewStore(pool)
	_, key := mustCreate(t, s, "ingest", apikey.ScopeEventsWrite)
	kr := startKeyring(t, s, hourly)

	pool.Close()
	require.Error(t, kr.Refresh(t.Context()))
	_, err = kr.Authenticate(key)
	require.NoError(t, err)
	require.False(t, kr.Open())
}

func TestKeyring_StartFailsWhenTheFirstLoadFails(t *testing.T) {
	t.Parallel()
	_, url := testdb.NewEmpty(t) // no api_keys table
	pool, err := pgxpool.New(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	kr, err := apikey.NewKeyring(apikey.NewStore(pool), apikey.KeyringConfig{})
	require.NoError(t, err)
	require.ErrorContains(t, kr.Start(t.Context()), "api_keys")
	kr.Stop()
}

func TestKeyringConfig_RefusesARefreshBelowTheMinimum(t *testing.T) {
	t.Parallel()
	_, err := apikey.NewKeyring(nil, apikey.KeyringConfig{Refresh: time.Millisecond})
	require.ErrorContains(t, err, "Refresh")
	_, err = apikey.NewKeyring(nil, apikey.KeyringConfig{Refresh: -time.Second})
	require.ErrorContains(t, err, "Refresh")
	require.Error(t, apikey.KeyringConfig{}.Validate(), "Validate checks, it does not fill in defaults")
}

// Not parallel: goleak would count other tests' goroutines as leaks.
func TestKeyring_StopLeavesNoGoroutineAndIsSafeTwice(t *testing.T) {
	s, _ := newStore(t)
	_, key := mustCreate(t, s, "ingest", apikey.ScopeEventsWrite)
	ignore := goleak.IgnoreCurrent()
	kr, err := apikey.NewKeyring(s, apikey.KeyringConfig{Refresh: hourly, Now: func() time.Time { return usedAt }})
	require.NoError(t, err)
	require.NoError(t, kr.Start(t.Context()))
	require.Error(t, kr.Start(t.Context()), "started once only")
	_, err = kr.Authenticate(key)
	require.NoError(t, err)

	kr.Stop()
	kr.Stop()
	goleak.VerifyNone(t, ignore)
	// Stop wrote the use that no refresh had.
	got, err := s.Get(t.Context(), apikey.IDOf(key))
	require.NoError(t, err)
	require.NotNil(t, got.LastUsedAt)
	require.True(t, usedAt.Equal(*got.LastUsedAt))
}
