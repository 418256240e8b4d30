package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/internal/testdb"
)

// daybookKeys runs `daybook keys args...` on the database at dbURL.
func daybookKeys(t *testing.T, dbURL string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"keys"}, args...)...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "DAYBOOK_LOG_LEVEL=warn")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	var exit *exec.ExitError
	if err := cmd.Run(); err != nil && !errors.As(err, &exit) {
		require.NoError(t, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// printedKey decodes the one JSON object `keys create` prints, refusing anything else on stdout.
func printedKey(t *testing.T, stdout string) map[string]any {
	t.Helper()
	require.True(t, strings.HasSuffix(stdout, "}\n"), "stdout %q", stdout)
	dec := json.NewDecoder(strings.NewReader(stdout))
	var obj map[string]any
	require.NoError(t, dec.Decode(&obj), "stdout %q", stdout)
	_, err := dec.Token()
	require.ErrorIs(t, err, io.EOF, "one object and nothing else: %q", stdout)
	return obj
}

func keysCount(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	n, err := apikey.NewStore(pool).Count(t.Context())
	require.NoError(t, err)
	return n
}

func TestKeys_CreatePrintsAKeyThatAuthenticatesUntilRevokedAndIsNeverStored(t *testing.T) {
	t.Parallel()
	pool, dbURL := testdb.NewWithURL(t)
	kr, err := apikey.NewKeyring(apikey.NewStore(pool), apikey.KeyringConfig{Refresh: time.Hour})
	require.NoError(t, err)
	require.NoError(t, kr.Start(t.Context()))
	t.Cleanup(kr.Stop)

	stdout, stderr, code := daybookKeys(t, dbURL, "create", "--name", "billing export", "--scopes", "ledger:read, events:read,ledger:read")
	require.Zero(t, code, stderr)
	created := printedKey(t, stdout)
	key, _ := created["key"].(string)
	id, ok := apikey.ParseID(key)
	require.True(t, ok, "key %q", key)
	require.Equal(t, map[string]any{
		"id": id, "key": key, "name": "billing export", "scopes": []any{"events:read", "ledger:read"},
	}, created, "no rate_limit when none is set")

	require.NoError(t, kr.Refresh(t.Context()))
	k, err := kr.Authenticate(key)
	require.NoError(t, err)
	require.Equal(t, id, k.ID)
	require.Equal(t, []string{apikey.ScopeEventsRead, apikey.ScopeLedgerRead}, k.Scopes)

	secret := key[len("dbk_"+id+"_"):]
	var table string
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT string_agg(t::text, E'\n') FROM api_keys t`).Scan(&table))
	require.Contains(t, table, id)
	require.NotContains(t, table, secret)

	stdout, stderr, code = daybookKeys(t, dbURL, "list")
	require.Zero(t, code, stderr)
	require.Regexp(t, `ID\s+NAME\s+SCOPES\s+RATE\s+CREATED\s+LAST USED\s+REVOKED\n`, stdout)
	require.Regexp(t, id+`\s+billing export\s+events:read,ledger:read\s+-\s+20\S+\s+-\s+-\n`, stdout)
	require.Contains(t, stdout, "1 key(s)")
	require.NotContains(t, stdout, secret)

	stdout, stderr, code = daybookKeys(t, dbURL, "list", "--json")
	require.Zero(t, code, stderr)
	require.NotContains(t, stdout, secret)
	var listed []map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &listed))
	require.Len(t, listed, 1)
	require.ElementsMatch(t, []string{"id", "name", "scopes", "rate_limit", "created_at", "last_used_at", "revoked_at"}, keysOf(listed[0]))
	require.Equal(t, id, listed[0]["id"])
	require.Nil(t, listed[0]["revoked_at"])

	stdout, stderr, code = daybookKeys(t, dbURL, "revoke", id)
	require.Zero(t, code, stderr)
	require.Equal(t, "revoked "+id+"\n", stdout)
	require.NoError(t, kr.Refresh(t.Context()))
	_, err = kr.Authenticate(key)
	require.ErrorIs(t, err, apikey.ErrRevoked)

	stdout, stderr, code = daybookKeys(t, dbURL, "list", "--json")
	require.Zero(t, code, stderr)
	require.NoError(t, json.Unmarshal([]byte(stdout), &listed))
	require.NotNil(t, listed[0]["revoked_at"])
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestKeys_CreateMigratesAFreshDatabaseAndPrintsARateLimitOnlyWhenSet(t *testing.T) {
	t.Parallel()
	pool, dbURL := testdb.NewEmpty(t)
	stdout, stderr, code := daybookKeys(t, dbURL, "create", "--name", "ci", "--scopes", "events:write", "--rate-limit", "2.5")
	require.Zero(t, code, stderr)
	created := printedKey(t, stdout)
	require.Equal(t, 2.5, created["rate_limit"])
	require.Equal(t, 1, keysCount(t, pool))

	stdout, stderr, code = daybookKeys(t, dbURL, "list")
	require.Zero(t, code, stderr)
	require.Regexp(t, `ci\s+events:write\s+2\.5\s`, stdout)
}

func TestKeys_UsageErrorsExitTwoAndCreateNothing(t *testing.T) {
	t.Parallel()
	pool, dbURL := testdb.NewWithURL(t)
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"create", "--name", "x", "--scopes", "events:write,events:delete"}, `unknown scope "events:delete"`},
		{[]string{"create", "--scopes", "events:write"}, "needs --name"},
		{[]string{"create", "--name", "x"}, "needs --scopes"},
		{[]string{"create", "--name", "x", "--scopes", " , "}, "no scopes"},
		{[]string{"create", "--name", "x", "--scopes", "admin", "--rate-limit", "-1"}, "--rate-limit"},
		{[]string{"create", "--name", "x", "--scopes", "admin", "--colour"}, "flag provided but not defined: -colour"},
		{[]string{"create", "--name", strings.Repeat("x", 101), "--scopes", "admin"}, "name has 101 bytes"},
		{[]string{"revoke"}, "keys revoke takes one key ID"},
		{[]string{"list", "extra"}, `unexpected argument "extra"`},
		{[]string{"rotate"}, `keys: unknown subcommand "rotate"`},
		{nil, "keys needs create, list or revoke"},
	} {
		stdout, stderr, code := daybookKeys(t, dbURL, tc.args...)
		require.Equal(t, 2, code, "%v: %s", tc.args, stderr)
		require.Contains(t, stderr, tc.says, tc.args)
		require.Empty(t, stdout, tc.args)
	}
	require.Zero(t, keysCount(t, pool))
}

func TestKeys_RevokeOfAnUnknownIDExitsOne(t *testing.T) {
	t.Parallel()
	_, dbURL := testdb.NewWithURL(t)
	stdout, stderr, code := daybookKeys(t, dbURL, "revoke", "nosuchkey")
	require.Equal(t, 1, code, stderr)
	require.Equal(t, "daybook: no key with id nosuchkey\n", stderr)
	require.Empty(t, stdout)
}
