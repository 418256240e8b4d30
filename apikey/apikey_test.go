package apikey_test

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/apikey"
)

func TestGenerate_KeysParseBackToTheirIDAndAreDistinct(t *testing.T) {
	t.Parallel()
	const n = 1000
	ids, keys := map[string]bool{}, map[string]bool{}
	for range n {
		id, key, err := apikey.Generate()
		require.NoError(t, err)
		require.Regexp(t, `^[a-z2-7]{12}$`, id)
		require.Regexp(t, `^dbk_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$`, key)
		got, ok := apikey.ParseID(key)
		require.True(t, ok, key)
		require.Equal(t, id, got)
		require.Equal(t, id, apikey.IDOf(key))
		ids[id], keys[key] = true, true
	}
	require.Len(t, ids, n)
	require.Len(t, keys, n)
}

func TestHash_IsSHA256OfTheWholeKey(t *testing.T) {
	t.Parallel()
	_, key, err := apikey.Generate()
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256([]byte(key)), apikey.Hash(key))
	require.NotEqual(t, apikey.Hash(key), apikey.Hash(key[:len(key)-1]))
}

func TestIDOf_AnythingButAWellFormedKeyIsTheBootstrapKey(t *testing.T) {
	t.Parallel()
	id, key, err := apikey.Generate()
	require.NoError(t, err)
	secret := key[len("dbk_"+id+"_"):]
	for name, s := range map[string]string{
		"empty":               "",
		"operator's own":      "correct-horse-battery-staple-0123456789",
		"no prefix":           id + "_" + secret,
		"upper-case prefix":   "DBK_" + id + "_" + secret,
		"short id":            "dbk_" + id[1:] + "_" + secret,
		"id outside base32":   "dbk_" + id[:11] + "1_" + secret,
		"upper-case id":       "dbk_" + strings.ToUpper(id) + "_" + secret,
		"short secret":        key[:len(key)-1],
		"long secret":         key + "A",
		"padded secret":       key[:len(key)-1] + "=",
		"space in secret":     key[:len(key)-1] + " ",
		"dash for underscore": "dbk_" + id + "-" + secret,
	} {
		_, ok := apikey.ParseID(s)
		require.False(t, ok, name)
		require.Equal(t, apikey.BootstrapID, apikey.IDOf(s), name)
	}
}

func TestParseScopes_TrimsDeduplicatesAndSortsCanonically(t *testing.T) {
	t.Parallel()
	got, err := apikey.ParseScopes(" admin,events:write , ledger:read,admin,")
	require.NoError(t, err)
	require.Equal(t, []string{apikey.ScopeEventsWrite, apikey.ScopeLedgerRead, apikey.ScopeAdmin}, got)

	got, err = apikey.ParseScopes(strings.Join(apikey.Scopes(), ","))
	require.NoError(t, err)
	require.Equal(t, []string{"events:write", "events:read", "ledger:read", "ledger:write", "admin"}, got)
}

func TestParseScopes_RefusesUnknownScopeByNameAndEmptyList(t *testing.T) {
	t.Parallel()
	_, err := apikey.ParseScopes("events:write,events:delete")
	require.ErrorIs(t, err, apikey.ErrInvalid)
	require.ErrorContains(t, err, `"events:delete"`)

	for _, csv := range []string{"", " ", ",, ,"} {
		_, err := apikey.ParseScopes(csv)
		require.ErrorIs(t, err, apikey.ErrInvalid, "%q", csv)
		require.ErrorContains(t, err, "no scopes", "%q", csv)
	}
}

func TestKey_HasOnlyTheScopesGranted(t *testing.T) {
	t.Parallel()
	k := apikey.Key{Scopes: []string{apikey.ScopeAdmin, apikey.ScopeLedgerRead}}
	require.True(t, k.Has(apikey.ScopeAdmin))
	require.True(t, k.Has(apikey.ScopeLedgerRead))
	require.False(t, k.Has(apikey.ScopeEventsWrite), "admin implies no other scope")
	require.False(t, k.Has(""))
}
