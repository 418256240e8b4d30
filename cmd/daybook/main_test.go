package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/internal/testredis"
)

// binary is the daybook command built once for these end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "daybook-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "daybook")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build daybook:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// processLog collects a process's output; the test reads it while the
// process still writes.
type processLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *processLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *processLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// instance is a daybook process on its own schema, Redis prefix and port.
type instance struct {
	t    *testing.T
	pool *pgxpool.Pool
	env  []string
	url  string
	cmd  *exec.Cmd
	log  *processLog
	done chan error
}

func newInstance(t *testing.T, extraEnv ...string) *instance {
	t.Helper()
	pool, dbURL := testdb.NewWithURL(t)
	_, prefix := testredis.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	env := append(os.Environ(),
		"DATABASE_URL="+dbURL, "REDIS_URL=redis://localhost:6379/0", "DAYBOOK_HTTP_ADDR="+addr,
		"DAYBOOK_REDIS_PREFIX="+prefix, "DAYBOOK_ARCHIVE_URL=file://"+t.TempDir(),
		"DAYBOOK_WORKER_CONSUMERS=4", "DAYBOOK_RESCUE_INTERVAL=200ms", "DAYBOOK_LOG_LEVEL=warn",
	)
	return &instance{t: t, pool: pool, env: append(env, extraEnv...), url: "http://" + addr}
}

func (in *instance) start(args ...string) {
	in.t.Helper()
	if len(args) == 0 {
		args = []string{"run"}
	}
	in.cmd = exec.Command(binary, args...)
	in.cmd.Env = in.env
	in.log = &processLog{}
	in.cmd.Stdout, in.cmd.Stderr = in.log, in.log
	require.NoError(in.t, in.cmd.Start())
	in.done = make(chan error, 1)
	go func() { in.done <- in.cmd.Wait() }()
	in.t.Cleanup(func() {
		if in.cmd.ProcessState == nil {
			_ = in.cmd.Process.Kill()
			<-in.done //nolint:errcheck // killed on purpose: its exit status says nothing
		}
	})
	require.Eventually(in.t, func() bool {
		resp, err := http.Get(in.url + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond, "daybook never became ready; log:\n%s", in.log)
}

// sigterm stops the process as an orchestrator does and returns how long it took.
func (in *instance) sigterm() time.Duration {
	in.t.Helper()
	start := time.Now()
	require.NoError(in.t, in.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-in.done:
		require.NoError(in.t, err, "exit status; log:\n%s", in.log)
	case <-time.After(20 * time.Second):
		in.t.Fatalf("daybook did not exit after SIGTERM; log:\n%s", in.log)
	}
	return time.Since(start)
}

type ingestAnswer struct {
	ID             string `json:"id"`
	IdempotencyKey string `json:"idempotency_key"`
	Status         string `json:"status"`
	Duplicate      bool   `json:"duplicate"`
}

// send sends a JSON request to the instance; headers are name, value pairs.
func (in *instance) send(method, path, body string, headers ...string) *http.Response {
	in.t.Helper()
	req, err := http.NewRequest(method, in.url+path, strings.NewReader(body))
	require.NoError(in.t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(in.t, err)
	return resp
}

func (in *instance) ingest(body string, headers ...string) (int, ingestAnswer) {
	resp := in.send(http.MethodPost, "/events/ingest", body, headers...)
	defer resp.Body.Close()
	var a ingestAnswer
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &a)
	return resp.StatusCode, a
}

func (in *instance) eventStatus(id string) string {
	resp, err := http.Get(in.url + "/events/" + id)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var e struct {
		Status string `json:"status"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return e.Status
}

func (in *instance) count(sql string, args ...any) int {
	var n int
	require.NoError(in.t, in.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// The README's curl example, end to end through the real binary.
func TestRun_ReadmeExampleReachesCompleted(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	in.start()
	body := `{"event_id":"evt-1","source":"order_updates","type":"order.updated","order_id":"o-1","payload":{"status":"paid","amount":"12.30"}}`
	code, a := in.ingest(body)
	require.Equal(t, http.StatusAccepted, code)
	require.Equal(t, "evt-1", a.IdempotencyKey)
	require.Equal(t, "PENDING", a.Status)
	require.False(t, a.Duplicate)
	require.Eventually(t, func() bool { return in.eventStatus(a.ID) == "COMPLETED" }, 10*time.Second, 20*time.Millisecond)

	code, again := in.ingest(body)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, ingestAnswer{ID: a.ID, IdempotencyKey: "evt-1", Status: "COMPLETED", Duplicate: true}, again)
	require.Equal(t, "paid", func() string {
		var s string
		require.NoError(t, in.pool.QueryRow(context.Background(), `SELECT status FROM orders WHERE order_id = 'o-1'`).Scan(&s))
		return s
	}())
	in.sigterm()
}

func TestRun_HundredConcurrentRequestsWithOneKeyMakeOneRowProcessedOnce(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	in.start()
	var wg sync.WaitGroup
	codes := make([]int, 100)
	ids := make([]string, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = in.ingest(fmt.Sprintf(`{"source":"clicks","type":"click","payload":{"n":%d}}`, i), "X-Idempotency-Key", "same-key")
			_, a := in.ingest(`{"source":"clicks","type":"click","payload":{}}`, "X-Idempotency-Key", "same-key")
			ids[i] = a.ID
		}()
	}
	wg.Wait()
	accepted := 0
	for _, c := range codes {
		if c == http.StatusAccepted {
			accepted++
		} else {
			require.Equal(t, http.StatusOK, c)
		}
	}
	require.Equal(t, 1, accepted)
	for _, id := range ids {
		require.Equal(t, ids[0], id, "every duplicate names the original")
	}
	require.Eventually(t, func() bool { return in.eventStatus(ids[0]) == "COMPLETED" }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 1, in.count(`SELECT count(*) FROM ingestion_events`))
	require.Equal(t, 1, in.count(`SELECT count(*) FROM event_log`))
	in.sigterm()
}

// SIGTERM while events are being processed: exit 0 within the shutdown
// timeout, nothing in PROCESSING; after a restart every accepted event is
// COMPLETED exactly once.
func TestRun_SIGTERMDrainsAndARestartFinishesEverything(t *testing.T) {
	t.Parallel()
	in := newInstance(t, "DAYBOOK_RATE_LIMIT=0")
	in.start()
	const n = 400
	ids := make([]string, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				code, a := in.ingest(fmt.Sprintf(`{"event_id":"e-%d","source":"order_updates","type":"order.updated","order_id":"o-%d","payload":{"status":"paid"}}`, i, i%50))
				require.Equal(t, http.StatusAccepted, code)
				ids[i] = a.ID
			}
		}()
	}
	wg.Wait()
	took := in.sigterm()
	require.Less(t, took, 10*time.Second, "exits within DAYBOOK_SHUTDOWN_TIMEOUT")
	require.Zero(t, in.count(`SELECT count(*) FROM ingestion_events WHERE status = 'PROCESSING'`), "nothing left PROCESSING")

	in.start()
	require.Eventually(t, func() bool {
		return in.count(`SELECT count(*) FROM ingestion_events WHERE status = 'COMPLETED'`) == n
	}, 30*time.Second, 50*time.Millisecond, "log:\n%s", in.log)
	require.Equal(t, n, in.count(`SELECT count(*) FROM event_log`), "each event processed exactly once")
	require.Zero(t, in.count(`SELECT count(*) FROM dead_letters`))
	in.sigterm()
}

func TestCommands_MigrateStatusOpenAPIAndDLQ(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	run := func(args ...string) string {
		cmd := exec.Command(binary, args...)
		cmd.Env = in.env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%v: %s", args, out)
		return string(out)
	}
	require.Regexp(t, `0002\s+ingestion\s+20`, run("migrate", "status"))
	require.Contains(t, run("migrate", "up"), "up to date")
	require.Contains(t, run("openapi"), "openapi: 3.1")
	require.Contains(t, run("dlq", "list"), "0 dead letter(s)")

	require.Contains(t, run("reconcile"), "OK: 0 accounts, 0 transfers, 0 mismatches")
	require.Contains(t, run("projections", "rebuild", "--all"), "orders: rebuilt from 0 events")
	var acct string
	require.NoError(t, in.pool.QueryRow(context.Background(), `INSERT INTO accounts (id, name, currency, allow_negative)
		VALUES ('01a22516-0000-7000-8000-000000000001', 'x', 'USD', false) RETURNING id::text`).Scan(&acct))
	recon := exec.Command(binary, "reconcile")
	recon.Env = in.env
	out, err := recon.CombinedOutput()
	require.Error(t, err)
	require.Equal(t, 1, recon.ProcessState.ExitCode(), "a mismatch exits 1: %s", out)
	require.Contains(t, string(out), acct)

	cmd := exec.Command(binary, "frobnicate")
	cmd.Env = in.env
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	require.Equal(t, 2, cmd.ProcessState.ExitCode())
	require.Contains(t, string(out), `unknown command "frobnicate"`)
}

// With 256 consumers watermill logged five Info lines per consumer: 1,303
// lines for one start and stop. They are Debug now.
func TestRun_StartAndStopLogAHandfulOfLinesAtInfo(t *testing.T) {
	t.Parallel()
	in := newInstance(t, "DAYBOOK_LOG_LEVEL=info", "DAYBOOK_WORKER_CONSUMERS=256")
	in.start()
	in.sigterm()
	lines := strings.Count(in.log.String(), "\n")
	require.LessOrEqual(t, lines, 30, "start and stop logged %d lines:\n%s", lines, in.log)
}
