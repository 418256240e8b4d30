package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// status sends a request to the instance and returns the status code.
func (in *instance) status(method, path, body string, headers ...string) int {
	in.t.Helper()
	resp := in.send(method, path, body, headers...)
	resp.Body.Close()
	return resp.StatusCode
}

// everyInterface is the instance's port on every interface: an address
// other hosts can reach. Tests still send only to 127.0.0.1.
func (in *instance) everyInterface() string {
	return "DAYBOOK_HTTP_ADDR=0.0.0.0:" + in.url[strings.LastIndex(in.url, ":")+1:]
}

func TestServe_RefusesToServeWithoutKeysOnAnAddressOtherHostsReach(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "serve")
	cmd.Env = append(in.env, in.everyInterface())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr

	err := cmd.Run()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "serve must refuse to start: %v\n%s", err, stderr.String())
	require.Equal(t, 1, exit.ExitCode())
	require.Contains(t, stderr.String(), "no API key exists")
	require.Contains(t, stderr.String(), "DAYBOOK_AUTH=off")
}

func TestServe_BootstrapKeyFromTheEnvironmentIsRequiredOnEveryInterface(t *testing.T) {
	t.Parallel()
	const bootstrap = "compose-bootstrap-key-0123456789abcdef"
	in := newInstance(t, "DAYBOOK_BOOTSTRAP_KEY="+bootstrap, "DAYBOOK_BOOTSTRAP_SCOPES=events:write,events:read")
	in.env = append(in.env, in.everyInterface())
	in.start("serve")
	event := `{"event_id":"boot-1","source":"clicks","type":"click","payload":{}}`

	require.Equal(t, http.StatusUnauthorized, in.status(http.MethodPost, "/events/ingest", event))
	require.Equal(t, http.StatusAccepted, in.status(http.MethodPost, "/events/ingest", event, "Authorization", "Bearer "+bootstrap))
	require.Equal(t, http.StatusForbidden, in.status(http.MethodPost, "/accounts", `{"name":"a"}`, "Authorization", "Bearer "+bootstrap),
		"DAYBOOK_BOOTSTRAP_SCOPES leaves ledger:write out")
	require.Equal(t, 1, in.count(`SELECT count(*) FROM api_keys WHERE id = 'bootstrap' AND position($1::bytea IN secret_sha256) = 0`,
		[]byte(bootstrap)), "stored once, as a hash")
	require.NotContains(t, in.log.String(), bootstrap, "the key never reaches the log")
}

func TestServe_AuthOffServesEveryoneAndSaysSo(t *testing.T) {
	t.Parallel()
	in := newInstance(t, "DAYBOOK_AUTH=off", "DAYBOOK_LOG_LEVEL=warn")
	in.env = append(in.env, in.everyInterface())
	in.start("serve")

	require.Equal(t, http.StatusCreated, in.status(http.MethodPost, "/accounts", `{"name":"a"}`))
	require.Contains(t, in.log.String(), "DAYBOOK_AUTH=off: every route is served to anyone")
}

// The contract: running servers honour a new or revoked key within 5 s.
func TestRun_NewAndRevokedKeysAreHonouredWithinFiveSeconds(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	in.start()
	dbURL := ""
	for _, kv := range in.env {
		if v, ok := strings.CutPrefix(kv, "DATABASE_URL="); ok {
			dbURL = v
		}
	}
	account := `{"name":"a"}`
	require.Equal(t, http.StatusCreated, in.status(http.MethodPost, "/accounts", account), "no key yet: open on loopback")

	stdout, stderr, code := daybookKeys(t, dbURL, "create", "--name", "ops", "--scopes", "ledger:write")
	require.Zero(t, code, stderr)
	key := printedKey(t, stdout)["key"].(string)
	id := printedKey(t, stdout)["id"].(string)
	created := time.Now()
	require.Eventually(t, func() bool {
		return in.status(http.MethodPost, "/accounts", account) == http.StatusUnauthorized
	}, 5*time.Second, 50*time.Millisecond, "the first key closes the open API")
	t.Logf("the first key was required %s after it was created", time.Since(created).Round(time.Millisecond))
	require.Equal(t, http.StatusCreated, in.status(http.MethodPost, "/accounts", account, "Authorization", "Bearer "+key))

	_, stderr, code = daybookKeys(t, dbURL, "revoke", id)
	require.Zero(t, code, stderr)
	revoked := time.Now()
	require.Eventually(t, func() bool {
		return in.status(http.MethodPost, "/accounts", account, "Authorization", "Bearer "+key) == http.StatusUnauthorized
	}, 5*time.Second, 50*time.Millisecond, "a revoked key is refused")
	t.Logf("the revoked key was refused %s after it was revoked", time.Since(revoked).Round(time.Millisecond))

	stdout, _, _ = daybookKeys(t, dbURL, "list", "--json")
	require.Contains(t, stdout, `"last_used_at"`)
	require.NotContains(t, stdout, key[len(key)-20:], "no secret in the list")
}
