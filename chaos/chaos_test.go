package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pgxpool's health check ends moments after Close.
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
	)
}

// envChaosRequired turns a skip for missing tools into a failure (for a CI
// that is meant to have them).
const envChaosRequired = "DAYBOOK_CHAOS_REQUIRED"

// TestChaos_Short runs the four scenarios in their short form against a
// private Postgres and Redis: no accepted event or transfer lost or done
// twice, nothing stuck, daybook reconcile clean.
func TestChaos_Short(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own Postgres and Redis and runs four fault scenarios (about 90 s)")
	}
	requireTools(t)
	out := &lineLogger{t: t}
	results, err := run(t.Context(), options{short: true, seed: 1, out: out})
	out.flush()
	require.NoError(t, err)
	require.Len(t, results, len(scenarios))
	for _, r := range results {
		require.Truef(t, r.ok(), "scenario %s failed: %v", r.name, r.problems)
		require.Positive(t, r.events.accepted, r.name)
		require.Equal(t, r.events.accepted+r.events.storedUnconfirmed, r.events.completed+r.events.deadLettered,
			"%s: every stored event COMPLETED or dead-lettered", r.name)
		require.NotEmpty(t, r.faults, r.name)
	}
}

// requireTools skips (or, with DAYBOOK_CHAOS_REQUIRED set, fails) when the
// machine cannot run the services: this test needs the PostgreSQL server
// binaries and redis-server, not just running services.
func requireTools(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := postgresBinDir(t.Context()); err != nil {
		missing = append(missing, err.Error())
	}
	if _, err := postgresCredential(); err != nil {
		missing = append(missing, err.Error())
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		missing = append(missing, "redis-server not found on $PATH")
	}
	if len(missing) == 0 {
		return
	}
	msg := "cannot run the chaos scenarios here: " + strings.Join(missing, "; ")
	if os.Getenv(envChaosRequired) != "" {
		t.Fatal(msg)
	}
	t.Skip(msg + " (set " + envChaosRequired + "=1 to fail instead)")
}

// lineLogger sends whole lines to t.Log.
type lineLogger struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line) // no newline yet: keep it for the next write
			return len(p), nil
		}
		l.t.Log(strings.TrimSuffix(line, "\n"))
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 0 {
		l.t.Log(l.buf.String())
		l.buf.Reset()
	}
}
