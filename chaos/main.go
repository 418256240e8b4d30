// Command chaos runs Daybook under faults and checks that nothing accepted
// was lost or done twice.
//
//	go run ./chaos [-short] [-scenario NAME] [-keep] [-seed N]
//
// It starts its own Postgres (initdb + postgres, as the postgres OS user when
// run as root) and Redis on free loopback ports, builds the daybook binary
// once, and for each scenario runs `daybook serve` and one or two
// `daybook worker` processes against a fresh database and Redis key prefix,
// drives them with ingest events and ledger transfers (retried on 5xx and
// connection failures with the same idempotency key, as a client would),
// injects the scenario's faults, lets the system settle, and checks by
// querying Postgres directly and by running `daybook reconcile`.
//
// It speaks to Daybook through its HTTP contract and its binary; it imports
// gate, queue and eventstore only to read the work stream's depth and the
// outbox backlog as the worker itself measures them.
//
// Exit status: 0 every scenario passed; 1 any loss, duplicate, stuck event,
// reconcile mismatch or runner error; 2 bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// options are one run's settings.
type options struct {
	short    bool
	scenario string // "" runs every scenario
	keep     bool   // keep the temporary directory (data, logs)
	seed     uint64
	// events and transfers per second replace the form's load when above 0
	// (not the SQS scenarios', which moto bounds).
	events, transfers float64
	out               io.Writer
}

func main() {
	opts := options{out: os.Stdout}
	names := make([]string, len(scenarios))
	for i, sc := range scenarios {
		names[i] = sc.name
	}
	flag.BoolVar(&opts.short, "short", false, "run every scenario briefly (about 90 s in all; what the Go test runs)")
	flag.StringVar(&opts.scenario, "scenario", "", "run only this scenario: "+strings.Join(names, ", "))
	flag.BoolVar(&opts.keep, "keep", false, "keep the temporary directory (data directories, process logs)")
	flag.Uint64Var(&opts.seed, "seed", 1, "seed of the load generator's choices")
	flag.Float64Var(&opts.events, "events", 0, "ingest events per second (0: the form's)")
	flag.Float64Var(&opts.transfers, "transfers", 0, "transfers per second (0: the form's)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "chaos: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if _, err := selectScenarios(opts.scenario); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	results, err := run(ctx, opts)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	for _, r := range results {
		if !r.ok() {
			os.Exit(1)
		}
	}
}

func selectScenarios(name string) ([]scenario, error) {
	if name == "" {
		return scenarios, nil
	}
	for _, sc := range scenarios {
		if sc.name == name {
			return []scenario{sc}, nil
		}
	}
	return nil, fmt.Errorf("unknown scenario %q", name)
}

// run starts the services, runs the chosen scenarios one after another and
// prints the table. Every process it started is stopped, and its temporary
// directory removed, before it returns: on success, failure or interrupt.
func run(ctx context.Context, opts options) (results []*result, err error) {
	chosen, err := selectScenarios(opts.scenario)
	if err != nil {
		return nil, err
	}
	rg := &rig{opts: opts, start: time.Now(), rng: rand.New(rand.NewPCG(opts.seed, 0))} //nolint:gosec // G404: repeatable fault timing, no secret
	if rg.dir, err = os.MkdirTemp("", "daybook-chaos-"); err != nil {
		return nil, err
	}
	// The postgres user must reach its data directory inside.
	if err := os.Chmod(rg.dir, 0o755); err != nil { //nolint:gosec // G302: a directory, read-only to others
		os.RemoveAll(rg.dir)
		return nil, err
	}
	rg.sup = newSupervisor(rg.dir)
	defer func() {
		rg.sup.shutdown()
		if opts.keep {
			rg.logf("kept %s (data directories and process logs)", rg.dir)
			return
		}
		if rmErr := os.RemoveAll(rg.dir); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
	}()

	rg.logf("building daybook")
	if rg.binary, err = buildDaybook(ctx, rg.dir); err != nil {
		return nil, err
	}
	rg.logf("initdb and start postgres")
	if rg.pg, err = newPostgres(ctx, rg.sup, rg.dir); err != nil {
		return nil, err
	}
	rg.sup.onShutdown(rg.pg.kill)
	if err := rg.pg.start(ctx); err != nil {
		return nil, fmt.Errorf("start postgres: %w\n%s", err, rg.sup.tail("postgres", 20))
	}
	if rg.redis, err = newRedis(rg.sup, rg.dir, "redis"); err != nil {
		return nil, err
	}
	rg.sup.onShutdown(rg.redis.kill)
	if err := rg.redis.start(ctx); err != nil {
		return nil, fmt.Errorf("start redis: %w\n%s", err, rg.sup.tail("redis", 20))
	}
	rg.logf("postgres on 127.0.0.1:%d (%s), redis on 127.0.0.1:%d; logs in %s", rg.pg.port, rg.pg.bin, rg.redis.port, rg.dir)

	for _, sc := range chosen {
		if ctx.Err() != nil {
			break
		}
		res := rg.runScenario(ctx, sc)
		results = append(results, res)
		if !res.ok() {
			for _, name := range []string{sc.name + "-serve", sc.name + "-worker-1", sc.name + "-worker-2"} {
				if tail := rg.sup.tail(name, 15); tail != "" {
					rg.logf("last lines of %s (-keep keeps the whole log):\n%s", filepath.Join(rg.dir, name+".log"), tail)
				}
			}
		}
	}
	printTable(opts.out, results, time.Since(rg.start))
	if ctx.Err() != nil {
		return results, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return results, nil
}
