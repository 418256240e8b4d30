package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/transport"
)

// timing is one form (full or short) of a scenario.
type timing struct {
	load  time.Duration // how long the load runs; faults happen within it
	lead  time.Duration // load before the first fault
	every time.Duration // between faults (jittered by ±30% where it says so)
	down  time.Duration // how long a fault keeps a service down
}

// scenario is one kind of fault, injected while the load runs.
type scenario struct {
	name    string
	about   string
	apis    int // serve processes (default 1), the load spread over them
	workers int
	full    timing
	short   timing
	inject  func(load, ctx context.Context, st *stage) error
	// sqs runs the scenario with DAYBOOK_QUEUE=sqs on moto_server, with a
	// Redis of its own; its load is sqsLoad (moto takes about 50 messages/s).
	sqs bool
}

var scenarios = []scenario{
	{
		name: "worker-kill", about: "SIGKILL the worker every few seconds and restart it at once", workers: 1,
		full:   timing{load: 60 * time.Second, lead: 3 * time.Second, every: 5 * time.Second},
		short:  timing{load: 10 * time.Second, lead: 1500 * time.Millisecond, every: 2500 * time.Millisecond},
		inject: injectWorkerKills,
	},
	{
		name: "redis-restart", about: "kill Redis (SIGKILL), keep it down, start it again on the same port", workers: 1,
		full:   timing{load: 60 * time.Second, lead: 5 * time.Second, every: 15 * time.Second, down: 3 * time.Second},
		short:  timing{load: 10 * time.Second, lead: 2 * time.Second, every: 4 * time.Second, down: 1500 * time.Millisecond},
		inject: injectRedisRestarts,
	},
	{
		name: "postgres-down", about: "pg_ctl stop -m fast, Postgres unavailable, then start", workers: 1,
		full:   timing{load: 60 * time.Second, lead: 10 * time.Second, down: 30 * time.Second},
		short:  timing{load: 13 * time.Second, lead: 2 * time.Second, down: 8 * time.Second},
		inject: injectPostgresOutage,
	},
	{
		name: "api-kill", about: "SIGKILL the API mid-load and restart it at once; clients retry with the same keys", workers: 1,
		full:   timing{load: 60 * time.Second, lead: 3 * time.Second, every: 5 * time.Second},
		short:  timing{load: 10 * time.Second, lead: 1500 * time.Millisecond, every: 2500 * time.Millisecond},
		inject: injectAPIKills,
	},
	{
		name: "rolling-sigterm", about: "two workers; SIGTERM one, restart it once it has drained, then the other", workers: 2,
		full:   timing{load: 60 * time.Second, lead: 3 * time.Second, every: 6 * time.Second},
		short:  timing{load: 10 * time.Second, lead: 1500 * time.Millisecond, every: 2500 * time.Millisecond},
		inject: injectRollingRestarts,
	},
	{
		name: "scale-out", about: "two APIs and two workers on one host, the load spread over the APIs; SIGKILL one process after another, each restarted at once", apis: 2, workers: 2,
		full:   timing{load: 60 * time.Second, lead: 3 * time.Second, every: 5 * time.Second},
		short:  timing{load: 10 * time.Second, lead: 1500 * time.Millisecond, every: 2000 * time.Millisecond},
		inject: injectScaleOutKills,
	},
	{
		name: "sqs-redis-gone", about: "DAYBOOK_QUEUE=sqs on moto; SIGKILL Redis for good, then SIGKILL and restart the worker and the API without it", workers: 1,
		full:   timing{load: 60 * time.Second, lead: 5 * time.Second, every: 10 * time.Second},
		short:  timing{load: 12 * time.Second, lead: 2 * time.Second, every: 3 * time.Second},
		inject: injectRedisGone, sqs: true,
	},
}

// sqsLoad is the load of SQS scenarios: moto_server relays about 50 messages
// a second, and each event and transfer costs a work message and log messages.
var sqsLoad = loadSettings{eventsPerSecond: 10, transfersPerSecond: 3}

// form holds what differs between the full and the short run besides timings.
type form struct {
	load   loadSettings
	settle time.Duration // bound on waiting for the system to settle after the load
}

var (
	fullForm  = form{load: loadSettings{eventsPerSecond: 1000, transfersPerSecond: 200, retryFor: 60 * time.Second}, settle: 3 * time.Minute}
	shortForm = form{load: loadSettings{eventsPerSecond: 150, transfersPerSecond: 30, retryFor: 20 * time.Second}, settle: 75 * time.Second}
)

// rig is what every scenario shares: the supervisor, one Postgres cluster,
// one Redis and the daybook binary. Each scenario has its own database and
// Redis key prefix, so its checks see only its own rows.
type rig struct {
	opts   options
	sup    *supervisor
	dir    string
	binary string
	pg     *postgres
	redis  *redisServer
	start  time.Time
	rng    *rand.Rand
	outMu  sync.Mutex
}

func (rg *rig) logf(format string, args ...any) {
	rg.outMu.Lock()
	defer rg.outMu.Unlock()
	fmt.Fprintf(rg.opts.out, "[%6.1fs] %s\n", time.Since(rg.start).Seconds(), fmt.Sprintf(format, args...))
}

// jitter returns d ±30%.
func (rg *rig) jitter(d time.Duration) time.Duration {
	return d*7/10 + time.Duration(rg.rng.Int64N(int64(d)*6/10+1))
}

// stage is one scenario while it runs.
type stage struct {
	rig    *rig
	sc     scenario
	t      timing
	f      form
	res    *result
	db     string   // its database
	prefix string   // its Redis key prefix
	env    []string // of every daybook process it starts
	redis  *redisServer
	// sqs is the SQS scenario's queues (nil on Redis Streams).
	sqs *sqsQueues

	api     *daybookProc // apis[0]
	apis    []*daybookProc
	workers []*daybookProc
}

func (rg *rig) runScenario(ctx context.Context, sc scenario) *result {
	res := &result{name: sc.name}
	start := time.Now()
	rg.logf("%s: %s", sc.name, sc.about)
	if err := rg.scenario(ctx, sc, res); err != nil {
		res.problem("run", "%v", err)
	}
	res.wall = time.Since(start)
	verdict := "PASS"
	if !res.ok() {
		verdict = "FAIL"
	}
	rg.logf("%s: %s in %s", sc.name, verdict, res.wall.Round(100*time.Millisecond))
	return res
}

func (rg *rig) scenario(ctx context.Context, sc scenario, res *result) error {
	t, f := sc.full, fullForm
	if rg.opts.short {
		t, f = sc.short, shortForm
	}
	if rg.opts.events > 0 {
		f.load.eventsPerSecond = rg.opts.events
	}
	if rg.opts.transfers > 0 {
		f.load.transfersPerSecond = rg.opts.transfers
	}
	st := &stage{
		rig: rg, sc: sc, t: t, f: f, res: res, redis: rg.redis,
		db: "chaos_" + strings.ReplaceAll(sc.name, "-", "_"), prefix: "chaos:" + sc.name + ":",
	}
	if sc.sqs {
		retryFor := st.f.load.retryFor
		st.f.load = sqsLoad
		st.f.load.retryFor = retryFor
		// A Redis of its own: this scenario kills it for good.
		r, err := newRedis(rg.sup, rg.dir, "redis-"+sc.name)
		if err != nil {
			return err
		}
		if err := r.start(ctx); err != nil {
			return fmt.Errorf("start %s: %w", r.name, err)
		}
		defer r.kill()
		st.redis = r
		if st.sqs, err = newSQSQueues(ctx, sc.name, rg.rng.Uint64()); err != nil {
			return err
		}
		defer st.sqs.close()
	}
	st.env = append(baseEnv(),
		"DATABASE_URL="+rg.pg.url(st.db), "REDIS_URL="+st.redis.url(), "DAYBOOK_REDIS_PREFIX="+st.prefix,
		"DAYBOOK_ARCHIVE_URL=file://"+filepath.Join(rg.dir, "archive-"+sc.name))
	st.env = append(st.env, daybookSettings...)
	if st.sqs != nil {
		st.env = append(st.env, st.sqs.env()...)
	}

	stageCtx, stopStage := context.WithCancel(ctx)
	defer func() {
		stopStage()
		for _, p := range append(st.workers, st.apis...) {
			p.close()
		}
	}()

	var bases []string
	for i := range max(sc.apis, 1) {
		api, err := newDaybookProc(rg.sup, rg.binary, fmt.Sprintf("%s-serve-%d", sc.name, i+1), "serve", st.env)
		if err != nil {
			return err
		}
		st.apis = append(st.apis, api)
		if err := api.start(stageCtx); err != nil {
			return fmt.Errorf("start %s: %w\n%s", api.name, err, rg.sup.tail(api.name, 20))
		}
		bases = append(bases, api.url())
	}
	st.api = st.apis[0]
	for i := range sc.workers {
		w, err := newDaybookProc(rg.sup, rg.binary, fmt.Sprintf("%s-worker-%d", sc.name, i+1), "worker", st.env)
		if err != nil {
			return err
		}
		st.workers = append(st.workers, w)
		if err := w.start(stageCtx); err != nil {
			return fmt.Errorf("start %s: %w\n%s", w.name, err, rg.sup.tail(w.name, 20))
		}
	}

	gen := newGenerator(bases, sc.name, st.f.load, rg.opts.seed)
	defer gen.http.CloseIdleConnections()
	if err := gen.setup(stageCtx); err != nil {
		return err
	}
	rg.logf("%s: load %.0f events/s, %.0f transfers/s for %s", sc.name, st.f.load.eventsPerSecond, st.f.load.transfersPerSecond, t.load)
	load, stopLoad := context.WithTimeout(stageCtx, t.load)
	defer stopLoad()
	gen.start(load, stageCtx)
	injectErr := sc.inject(load, stageCtx, st)
	<-load.Done()
	gen.wait()
	rg.logf("%s: load stopped; %d events and %d transfers sent", sc.name, gen.nextEvent.Load(), gen.nextTransfer.Load())
	if injectErr != nil {
		return fmt.Errorf("inject faults: %w", injectErr)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	events, transfers := gen.snapshot()
	res.events.dupSent, res.events.dup200 = gen.dupSent.Load(), gen.dupAnswered200.Load()
	res.retries503, res.retriesConn = gen.retries503.Load(), gen.retriesConn.Load()
	var accepted []string
	for _, e := range events {
		if e.outcome == outcomeOK {
			accepted = append(accepted, e.key)
		}
	}
	res.failOpen = sc.sqs // Redis, the fast duplicate check, is gone
	return st.verify(stageCtx, accepted, func(s stored) {
		tally(res, events, transfers, gen.accounts, s)
	})
}

// verify waits for the system to settle, reads Postgres and the stream's
// pending entries, tallies, and runs daybook reconcile.
func (st *stage) verify(ctx context.Context, accepted []string, tallyFn func(stored)) error {
	rg, res := st.rig, st.res
	pool, err := pgxpool.New(ctx, rg.pg.url(st.db))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", st.db, err)
	}
	defer pool.Close()
	rdb := redis.NewClient(&redis.Options{Addr: st.redis.addr()})
	defer rdb.Close()

	tg := target{pool: pool, rdb: rdb, prefix: st.prefix, sqs: st.sqs}
	settleStart := time.Now()
	b, err := settle(ctx, tg, accepted, st.f.settle)
	if err != nil {
		res.problem("stuck", "%v", err)
		res.settled = "NOT settled: " + b.String()
	} else {
		res.settled = fmt.Sprintf("settled %s after the load (nothing PENDING/PROCESSING, queue and outbox empty, every transfer projected)", time.Since(settleStart).Round(100*time.Millisecond))
	}
	rg.logf("%s: %s", st.sc.name, res.settled)

	s, err := collect(ctx, pool)
	if err != nil {
		return err
	}
	if st.sqs == nil {
		parked, groupExists, err := parkedEvents(ctx, tg)
		switch {
		case err != nil:
			res.problem("run", "%v", err)
		case !groupExists:
			res.note("the work stream's consumer group %q does not exist: the worker is not consuming", transport.WorkGroup)
		}
		s.parked = parked
	}
	tallyFn(s)
	if s.strayLetters > 0 {
		res.note("%d dead letters name no stored event", s.strayLetters)
	}
	if res.events.readmitted > 0 {
		res.note("%d events were answered 202 twice while Redis was gone (the second id is never stored) and stored and processed once", res.events.readmitted)
	}
	if res.events.validDeadLettered > 0 {
		res.note("%d valid events were dead-lettered (retries used up under the fault)", res.events.validDeadLettered)
	}
	for _, p := range append(st.workers, st.apis...) {
		for _, c := range p.unexpectedExits() {
			res.note("%s; restarted after %s", c, crashRestartDelay)
		}
	}
	if res.events.accepted == 0 || res.transfers.ok <= accountsFunded || len(res.faults) == 0 {
		res.problem("run", "the scenario exercised nothing: %d events accepted, %d transfers moved, %d faults",
			res.events.accepted, res.transfers.ok, len(res.faults))
	}

	code, text, err := runReconcile(ctx, rg.binary, st.env)
	switch {
	case err != nil:
		res.reconcile = "ERROR"
		res.problem("reconcile", "%v: %s", err, text)
	case code == 0:
		res.reconcile = "exit 0"
		res.note("reconcile: %s", text)
	default:
		res.reconcile = fmt.Sprintf("exit %d", code)
		res.problem("reconcile", "daybook reconcile exited %d:\n%s", code, text)
	}
	return nil
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// injectWorkerKills: SIGKILL the worker's process group every few seconds
// (jittered) and restart it at once, until the load ends.
func injectWorkerKills(load, ctx context.Context, st *stage) error {
	kills, err := killInTurn(load, ctx, st, st.workers[:1])
	st.res.fault("%d worker SIGKILLs, each restarted at once", kills)
	return err
}

// killInTurn SIGKILLs procs one after another, the first after t.lead and
// then every t.every (jittered), restarting each at once, until the load
// ends. It returns how many it killed.
func killInTurn(load, ctx context.Context, st *stage, procs []*daybookProc) (int, error) {
	kills := 0
	for wait := st.t.lead; sleep(load, wait); wait = st.rig.jitter(st.t.every) {
		p := procs[kills%len(procs)]
		_, _, _ = p.halt(syscall.SIGKILL, 5*time.Second) // a SIGKILL's exit status says nothing
		kills++
		st.rig.logf("%s: SIGKILL %s (%d)", st.sc.name, p.name, kills)
		if err := p.start(ctx); err != nil {
			return kills, fmt.Errorf("restart %s after SIGKILL %d: %w", p.name, kills, err)
		}
	}
	return kills, nil
}

// injectAPIKills: SIGKILL the API process every few seconds (jittered) and
// restart it at once, until the load ends. Requests in flight lose their
// answers: an event may be on the queue, or a transfer committed, without
// the client knowing. The clients retry with the same keys, so every unknown
// outcome must still end exactly once.
func injectAPIKills(load, ctx context.Context, st *stage) error {
	kills, err := killInTurn(load, ctx, st, st.apis[:1])
	st.res.fault("%d API SIGKILLs, each restarted at once", kills)
	return err
}

// injectRedisRestarts: SIGKILL Redis, keep it down for t.down, start it again
// on the same port (it replays its AOF), every t.every, until the load ends.
func injectRedisRestarts(load, ctx context.Context, st *stage) error {
	r := st.rig.redis
	restarts := 0
	var downMax time.Duration
	for wait := st.t.lead; sleep(load, wait); wait = st.t.every {
		began := time.Now()
		r.kill()
		restarts++
		st.rig.logf("%s: SIGKILL redis (%d), down %s", st.sc.name, restarts, st.t.down)
		sleep(ctx, st.t.down)
		if err := r.start(ctx); err != nil {
			return fmt.Errorf("start redis again: %w\n%s", err, st.rig.sup.tail("redis", 20))
		}
		downMax = max(downMax, time.Since(began))
	}
	st.res.fault("%d Redis SIGKILL restarts, each down %s", restarts, downMax.Round(100*time.Millisecond))
	return nil
}

// injectScaleOutKills: SIGKILL the processes in turn (API 1, worker 1, API 2,
// worker 2, ...) every t.every (jittered) and restart each at once. The load
// goes on through the other API meanwhile; the restarted worker leases a slot
// of its own (the killed one's lease has not expired), so its consumers never
// take the other live worker's messages for their own.
func injectScaleOutKills(load, ctx context.Context, st *stage) error {
	var order []*daybookProc
	for i := range max(len(st.apis), len(st.workers)) {
		if i < len(st.apis) {
			order = append(order, st.apis[i])
		}
		if i < len(st.workers) {
			order = append(order, st.workers[i])
		}
	}
	kills, err := killInTurn(load, ctx, st, order)
	st.res.fault("%d SIGKILLs over %d APIs and %d workers, each restarted at once", kills, len(st.apis), len(st.workers))
	return err
}

// injectRedisGone: after t.lead, SIGKILL the stage's Redis and never start it
// again. Then, every t.every, SIGKILL the worker and restart it, then the API:
// each must start, and go on, without Redis. Only the rate limit and the fast
// duplicate check are gone; SQS carries the work, SNS and SQS the event log.
func injectRedisGone(load, ctx context.Context, st *stage) error {
	if !sleep(load, st.t.lead) {
		return nil
	}
	st.redis.kill()
	st.rig.logf("%s: SIGKILL %s, for good", st.sc.name, st.redis.name)
	st.res.fault("Redis SIGKILLed %s into the load and never restarted", st.t.lead)
	restarts := 0
	for _, p := range []*daybookProc{st.workers[0], st.api} {
		if !sleep(load, st.t.every) {
			break
		}
		_, _, _ = p.halt(syscall.SIGKILL, 5*time.Second) // a SIGKILL's exit status says nothing
		st.rig.logf("%s: SIGKILL %s, restart without Redis", st.sc.name, p.name)
		if err := p.start(ctx); err != nil {
			return fmt.Errorf("restart %s without Redis: %w", p.name, err)
		}
		restarts++
	}
	st.res.fault("%d SIGKILL restarts (worker, then API) with Redis gone", restarts)
	return nil
}

// injectPostgresOutage: after t.lead, pg_ctl stop -m fast; t.down later, start.
func injectPostgresOutage(load, ctx context.Context, st *stage) error {
	pg := st.rig.pg
	if !sleep(load, st.t.lead) {
		return nil
	}
	began := time.Now()
	st.rig.logf("%s: pg_ctl stop -m fast, down for %s", st.sc.name, st.t.down)
	stopErr := pg.stopFast(ctx)
	sleep(ctx, st.t.down)
	if err := pg.start(ctx); err != nil {
		return fmt.Errorf("start postgres again: %w\n%s", err, st.rig.sup.tail("postgres", 20))
	}
	down := time.Since(began)
	st.rig.logf("%s: postgres back after %s", st.sc.name, down.Round(100*time.Millisecond))
	if stopErr != nil {
		return fmt.Errorf("pg_ctl stop: %w", stopErr)
	}
	st.res.fault("Postgres down %s (pg_ctl stop -m fast, then start)", down.Round(100*time.Millisecond))
	return nil
}

// injectRollingRestarts: SIGTERM one worker, wait for its drain, restart it
// and wait until it answers, then the other one, every t.every.
func injectRollingRestarts(load, ctx context.Context, st *stage) error {
	restarts, unclean := 0, 0
	var drainMax time.Duration
	for wait := st.t.lead; sleep(load, wait); wait = st.t.every {
		w := st.workers[restarts%len(st.workers)]
		took, killed, exit := w.halt(syscall.SIGTERM, shutdownTimeout+sigtermSlack)
		restarts++
		drainMax = max(drainMax, took)
		st.rig.logf("%s: SIGTERM %s: exited in %s (%s)", st.sc.name, w.name, took.Round(10*time.Millisecond), exitText(exit))
		if killed || exit != nil {
			unclean++
			st.res.note("%s did not exit cleanly on SIGTERM (%s, after %s, killed=%v)", w.name, exitText(exit), took.Round(10*time.Millisecond), killed)
		}
		if err := w.start(ctx); err != nil {
			return fmt.Errorf("restart %s: %w", w.name, err)
		}
	}
	st.res.fault("%d rolling SIGTERMs over %d workers (slowest exit %s, %d unclean)",
		restarts, len(st.workers), drainMax.Round(10*time.Millisecond), unclean)
	return nil
}
