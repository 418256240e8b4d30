package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// daybookReadyTimeout bounds a daybook process's start (migrations included).
	daybookReadyTimeout = 60 * time.Second
	// crashRestartDelay is how long an unexpectedly exited process stays down
	// before the runner restarts it, as an orchestrator would.
	crashRestartDelay = time.Second
	// shutdownTimeout is DAYBOOK_SHUTDOWN_TIMEOUT; a SIGTERM gets this plus
	// sigtermSlack before the runner kills the process and counts it unclean.
	shutdownTimeout = 10 * time.Second
	sigtermSlack    = 5 * time.Second
)

// daybookSettings are the DAYBOOK_* values of every process. They shorten the
// recovery paths (rescue of stuck events, breaker probe) so that recovery
// happens within a scenario; the config's own rules hold: STUCK_AFTER exceeds
// ATTEMPT_TIMEOUT, and CLAIM_IDLE exceeds the worst case of 5 attempts x 2 s
// plus the backoffs 1+2+4+8 s = 25 s. Retries and backoffs keep their defaults.
var daybookSettings = []string{
	"DAYBOOK_RATE_LIMIT=0",
	"DAYBOOK_WORKER_CONSUMERS=2",
	"DAYBOOK_ATTEMPT_TIMEOUT=2s",
	"DAYBOOK_STUCK_AFTER=5s",
	"DAYBOOK_RESCUE_INTERVAL=1s",
	"DAYBOOK_CLAIM_IDLE=30s",
	"DAYBOOK_BREAKER_PROBE_INTERVAL=1s",
	"DAYBOOK_SHUTDOWN_TIMEOUT=" + shutdownTimeout.String(),
	"DAYBOOK_LOG_LEVEL=info",
}

// probeClient keeps no idle connections: a probe leaves nothing running behind it.
var probeClient = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// buildDaybook builds ./cmd/daybook once into dir.
func buildDaybook(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("go not found on $PATH: the runner builds the daybook binary")
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output() //nolint:gosec // G204: the go command found on $PATH
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("find the module root (go env GOMOD = %q): run from inside the daybook module", gomod)
	}
	binary := filepath.Join(dir, "daybook")
	build := exec.CommandContext(ctx, goBin, "build", "-o", binary, "./cmd/daybook") //nolint:gosec // G204: as above
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/daybook: %w\n%s", err, out)
	}
	return binary, nil
}

// baseEnv is the runner's environment without any Daybook setting, so that a
// developer's shell cannot change what a scenario runs.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DAYBOOK_") || strings.HasPrefix(kv, "DATABASE_URL=") || strings.HasPrefix(kv, "REDIS_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// daybookProc is one daybook role (serve, or one worker) on a fixed address.
// A process that exits without the runner asking is restarted after
// crashRestartDelay, and the exit is recorded.
type daybookProc struct {
	sup    *supervisor
	binary string
	name   string // "serve", "worker-1"
	role   string // the daybook command: serve or worker
	addr   string
	env    []string

	mu       sync.Mutex
	proc     *proc
	stopping bool // the runner is stopping it on purpose
	closed   bool // the stage is over: no more restarts
	crashes  []string
	watchers sync.WaitGroup
}

func newDaybookProc(sup *supervisor, binary, name, role string, env []string) (*daybookProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	return &daybookProc{
		sup: sup, binary: binary, name: name, role: role, addr: addr,
		// A process has one role: the address serves whichever it is.
		env: append(append([]string(nil), env...), "DAYBOOK_HTTP_ADDR="+addr, "DAYBOOK_WORKER_ADDR="+addr),
	}, nil
}

func (d *daybookProc) url() string { return "http://" + d.addr }

// start runs the process and waits until it answers: /ready for serve (its
// Postgres, Redis and queue are reachable), /health for a worker.
func (d *daybookProc) start(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return errors.New(d.name + ": stage is over")
	}
	p, err := d.sup.start(procSpec{name: d.name, path: d.binary, args: []string{d.role}, env: d.env})
	if err != nil {
		d.mu.Unlock()
		return err
	}
	d.proc, d.stopping = p, false
	d.watchers.Add(1)
	d.mu.Unlock()
	go d.watch(ctx, p)

	path := "/health"
	if d.role == "serve" {
		path = "/ready"
	}
	return waitUntil(ctx, daybookReadyTimeout, p, d.name, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url()+path, nil)
		if err != nil {
			return err
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %d", path, resp.StatusCode)
		}
		return nil
	})
}

// watch restarts a process that exits on its own.
func (d *daybookProc) watch(ctx context.Context, p *proc) {
	defer d.watchers.Done()
	select {
	case <-p.done:
	case <-ctx.Done():
		return
	}
	d.mu.Lock()
	if d.stopping || d.closed || d.proc != p {
		d.mu.Unlock()
		return
	}
	d.crashes = append(d.crashes, fmt.Sprintf("%s exited by itself (%s)", d.name, exitText(p.err)))
	d.mu.Unlock()
	select {
	case <-ctx.Done():
		return
	case <-time.After(crashRestartDelay):
	}
	_ = d.start(ctx) // a failed restart shows up as load errors and in the log
}

// halt stops the process on purpose with sig; see proc.stop.
func (d *daybookProc) halt(sig syscall.Signal, grace time.Duration) (took time.Duration, killed bool, exit error) {
	d.mu.Lock()
	p := d.proc
	d.stopping = true
	d.mu.Unlock()
	if p == nil {
		return 0, false, nil
	}
	took, killed = p.stop(sig, grace)
	return took, killed, p.err
}

// close stops the process for good (SIGTERM, then SIGKILL past the grace)
// and waits for its watcher.
func (d *daybookProc) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	_, _, _ = d.halt(syscall.SIGTERM, shutdownTimeout+sigtermSlack) // past the grace it is killed; either way it is gone
	d.watchers.Wait()
}

func (d *daybookProc) unexpectedExits() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.crashes...)
}
