package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procSpec is one process to start.
type procSpec struct {
	// name labels the process and its log file (<logDir>/<name>.log, appended across restarts).
	name string
	path string
	args []string
	env  []string // nil inherits the runner's environment
	// cred runs the process as another user (Postgres refuses to run as root).
	cred *syscall.Credential
	// deathSignal is what the kernel sends the process if the runner dies
	// without cleaning up (SIGKILL, OOM): the last guard against orphans.
	deathSignal syscall.Signal
}

// proc is a started process, the leader of its own process group: signals go
// to the whole group, so nothing it forks outlives it.
type proc struct {
	name string
	pid  int
	done chan struct{}
	err  error // exit status; read only after done is closed
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process group, unless the leader has already exited.
func (p *proc) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s to %s (pgid %d): %w", sig, p.name, p.pid, err)
	}
	return nil
}

// wait waits up to timeout for the process to exit; it reports whether it did.
func (p *proc) wait(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// stop sends sig and waits up to grace; past it the group is killed. It
// reports how long the exit took and whether it needed the kill.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) (took time.Duration, killed bool) {
	start := time.Now()
	_ = p.signal(sig) // an error means the group is gone, which is the goal
	if p.wait(grace) {
		return time.Since(start), false
	}
	_ = p.signal(syscall.SIGKILL)
	<-p.done
	return time.Since(start), true
}

// supervisor owns every process the runner starts and a stack of cleanups.
// shutdown runs the cleanups last in, first out, then kills whatever is
// still running: on success, failure and interrupt alike.
type supervisor struct {
	logDir string

	mu       sync.Mutex
	live     map[*proc]struct{}
	cleanups []func()
}

func newSupervisor(logDir string) *supervisor {
	return &supervisor{logDir: logDir, live: map[*proc]struct{}{}}
}

// onShutdown pushes a cleanup.
func (s *supervisor) onShutdown(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

func (s *supervisor) logPath(name string) string { return filepath.Join(s.logDir, name+".log") }

func (s *supervisor) start(spec procSpec) (*proc, error) {
	f, err := os.OpenFile(s.logPath(spec.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", spec.name, err)
	}
	fmt.Fprintf(f, "=== %s start: %s %s\n", time.Now().Format(time.RFC3339Nano), spec.path, strings.Join(spec.args, " "))
	// No context: these processes are stopped through their process group
	// (see proc.stop), which a context's kill of the leader alone would bypass.
	cmd := exec.Command(spec.path, spec.args...) //nolint:gosec,noctx // G204: the services the runner exists to start
	cmd.Env = spec.env
	cmd.Stdout, cmd.Stderr = f, f
	sig := spec.deathSignal
	if sig == 0 {
		sig = syscall.SIGKILL
	}
	// Go sets the parent-death signal after the credential change, so it survives it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: sig, Credential: spec.cred}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	p := &proc{name: spec.name, pid: cmd.Process.Pid, done: make(chan struct{})}
	s.mu.Lock()
	s.live[p] = struct{}{}
	s.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(f, "=== %s exit: %v\n", time.Now().Format(time.RFC3339Nano), exitText(p.err))
		f.Close()
		s.mu.Lock()
		delete(s.live, p)
		s.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// shutdown runs the cleanups, newest first, then kills every process still alive.
func (s *supervisor) shutdown() {
	for {
		s.mu.Lock()
		n := len(s.cleanups)
		if n == 0 {
			s.mu.Unlock()
			break
		}
		f := s.cleanups[n-1]
		s.cleanups = s.cleanups[:n-1]
		s.mu.Unlock()
		f()
	}
	s.mu.Lock()
	live := make([]*proc, 0, len(s.live))
	for p := range s.live {
		live = append(live, p)
	}
	s.mu.Unlock()
	for _, p := range live {
		p.stop(syscall.SIGKILL, 5*time.Second)
	}
}

// tail returns the last n notable lines of a process's log, for a failure
// report: INFO and DEBUG lines are left out, and a run of lines that differ
// only before their first space (a timestamp) is shown once with its count.
func (s *supervisor) tail(name string, n int) string {
	b, err := os.ReadFile(s.logPath(name))
	if err != nil {
		return ""
	}
	var lines []string
	var last string
	repeats := 0
	flush := func() {
		if repeats > 0 {
			lines[len(lines)-1] += fmt.Sprintf("  (x%d)", repeats+1)
		}
		repeats = 0
	}
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.Contains(line, `"level":"INFO"`) || strings.Contains(line, `"level":"DEBUG"`) {
			continue
		}
		_, rest, _ := strings.Cut(line, " ")
		if len(lines) > 0 && rest == last {
			repeats++
			continue
		}
		flush()
		lines, last = append(lines, line), rest
	}
	flush()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the service binds it; the service then fails to start and says so.
func freePort() (int, error) {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
