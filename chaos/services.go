package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

const (
	// serviceStartTimeout bounds waiting for Postgres or Redis to answer after a start.
	serviceStartTimeout = 60 * time.Second
	// pgStopTimeout bounds pg_ctl stop -m fast.
	pgStopTimeout = 60 * time.Second
	// pgMaxConnections covers serve, two workers (32 connections each), reconcile and the checker.
	pgMaxConnections = 300
)

// run starts a short-lived command under the supervisor and waits for it.
func (s *supervisor) run(ctx context.Context, spec procSpec, timeout time.Duration) error {
	p, err := s.start(spec)
	if err != nil {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stop(syscall.SIGKILL, 5*time.Second)
		return ctx.Err()
	case <-t.C:
		p.stop(syscall.SIGKILL, 5*time.Second)
		return fmt.Errorf("%s did not finish within %s (log %s)", spec.name, timeout, s.logPath(spec.name))
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w (log %s):\n%s", spec.name, p.err, s.logPath(spec.name), s.tail(spec.name, 15))
	}
	return nil
}

// postgres is a private cluster in a temporary data directory, listening on
// 127.0.0.1 and a socket directory of its own. The runner starts the
// postmaster itself (as its child, in its own process group) rather than
// through pg_ctl start, which would detach it: a runner killed without its
// cleanup then takes the cluster with it (parent-death signal). Stops go
// through pg_ctl stop -m fast, as an operator's would.
type postgres struct {
	sup  *supervisor
	bin  string // the directory holding initdb, postgres and pg_ctl
	data string
	sock string
	port int
	cred *syscall.Credential // the postgres user when the runner is root

	mu   sync.Mutex
	proc *proc
}

// newPostgres runs initdb in dir/pgdata (trust authentication, user postgres).
func newPostgres(ctx context.Context, sup *supervisor, dir string) (*postgres, error) {
	bin, err := postgresBinDir(ctx)
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	pg := &postgres{sup: sup, bin: bin, data: filepath.Join(dir, "pgdata"), sock: filepath.Join(dir, "pgsock"), port: port, cred: cred}
	for _, d := range []string{pg.data, pg.sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, fmt.Errorf("postgres directory: %w", err)
		}
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, fmt.Errorf("hand %s to the postgres user: %w", d, err)
			}
		}
	}
	err = sup.run(ctx, procSpec{
		name: "initdb", path: filepath.Join(bin, "initdb"), cred: cred,
		args: []string{"-D", pg.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"},
	}, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	return pg, nil
}

// postgresBinDir finds initdb: pg_config --bindir, else the newest
// /usr/lib/postgresql/<version>/bin (Debian, Ubuntu), else $PATH.
func postgresBinDir(ctx context.Context) (string, error) {
	has := func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, "initdb"))
		return err == nil
	}
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); has(dir) {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return pgVersion(matches[i]) > pgVersion(matches[j]) })
	if len(matches) > 0 {
		return filepath.Dir(matches[0]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("initdb not found (pg_config --bindir, /usr/lib/postgresql/*/bin, $PATH): install the PostgreSQL server (apt-get install postgresql)")
}

func pgVersion(initdb string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(initdb))), 64)
	return v
}

// postgresCredential is nil for an ordinary user; for root, whom initdb and
// postgres refuse, it is the postgres OS user (which the server package creates).
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and Postgres refuses root: need the postgres OS user to run it as (%w)", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("postgres user ids: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// url is the connection URL of database db.
func (pg *postgres) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.port, db)
}

// start runs the postmaster and waits until it accepts connections.
// fsync=off and full_page_writes=off buy speed on this shared machine; they
// cost nothing here, because the scenarios stop Postgres cleanly (pg_ctl stop
// -m fast checkpoints) and never crash the operating system under it.
func (pg *postgres) start(ctx context.Context) error {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	p, err := pg.sup.start(procSpec{
		name: "postgres", path: filepath.Join(pg.bin, "postgres"), cred: pg.cred,
		// SIGQUIT is the postmaster's immediate shutdown: it takes its backends with it.
		deathSignal: syscall.SIGQUIT,
		args: []string{
			"-D", pg.data, "-p", strconv.Itoa(pg.port), "-k", pg.sock, "-h", "127.0.0.1",
			"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=" + strconv.Itoa(pgMaxConnections),
		},
	})
	if err != nil {
		return err
	}
	pg.proc = p
	return waitUntil(ctx, serviceStartTimeout, p, "postgres", func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, pg.url("postgres")+"&connect_timeout=2")
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
}

// stopFast is pg_ctl stop -m fast: sessions are cut, the server checkpoints and exits.
func (pg *postgres) stopFast(ctx context.Context) error {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	err := pg.sup.run(ctx, procSpec{
		name: "pg_ctl", path: filepath.Join(pg.bin, "pg_ctl"), cred: pg.cred,
		args: []string{"stop", "-D", pg.data, "-m", "fast", "-w", "-t", strconv.Itoa(int(pgStopTimeout.Seconds()))},
	}, pgStopTimeout+10*time.Second)
	if pg.proc != nil && !pg.proc.wait(10*time.Second) {
		pg.proc.stop(syscall.SIGQUIT, 10*time.Second)
	}
	return err
}

// kill is the cleanup: an immediate shutdown of whatever still runs.
func (pg *postgres) kill() {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.proc != nil {
		pg.proc.stop(syscall.SIGQUIT, 10*time.Second)
	}
}

// redisServer is a private Redis with AOF on and appendfsync always. An
// accepted event is an XADD: a Redis restarted without persistence starts
// with an empty stream, and every accepted event not yet processed is gone by
// configuration, not by a fault of Daybook. always rather than everysec (what
// docker-compose.yml runs): under everysec Redis postpones the AOF write,
// while still answering clients, when a background fsync is slow (up to 2 s),
// so a kill in that window loses writes it acknowledged. The runner asks
// whether Daybook loses what it acknowledged; always keeps Redis out of the
// answer, and at a few hundred writes a second it costs little.
type redisServer struct {
	sup  *supervisor
	name string // the supervisor's name of the process
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	proc *proc
}

func newRedis(sup *supervisor, dir, name string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found on $PATH: install it (apt-get install redis-server)")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	rdir := filepath.Join(dir, name)
	if err := os.Mkdir(rdir, 0o700); err != nil {
		return nil, fmt.Errorf("redis directory: %w", err)
	}
	return &redisServer{sup: sup, name: name, bin: bin, dir: rdir, port: port}, nil
}

func (r *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *redisServer) url() string { return "redis://" + r.addr() + "/0" }

// start runs redis-server on its port and waits for PONG. A start after a
// kill loads the AOF.
func (r *redisServer) start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := r.sup.start(procSpec{
		name: r.name, path: r.bin,
		args: []string{
			"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
			"--appendonly", "yes", "--appendfsync", "always", "--save", "",
			"--maxmemory-policy", "noeviction", "--daemonize", "no",
		},
	})
	if err != nil {
		return err
	}
	r.proc = p
	return waitUntil(ctx, serviceStartTimeout, p, r.name, func(ctx context.Context) error {
		c := redis.NewClient(&redis.Options{Addr: r.addr(), DialTimeout: time.Second, MaxRetries: -1})
		defer c.Close()
		// LOADING (AOF replay) is an error too: wait until it is done.
		return c.Ping(ctx).Err()
	})
}

// kill is SIGKILL: no shutdown, no final AOF rewrite.
func (r *redisServer) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		r.proc.stop(syscall.SIGKILL, 10*time.Second)
	}
}

// waitUntil polls ready until it succeeds, p exits, ctx ends or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, p *proc, what string, ready func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		last = ready(attemptCtx)
		cancel()
		if last == nil {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited while starting (%s)", what, exitText(p.err))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
