// Command loadtest drives a running Daybook instance over loopback HTTP and prints figures.
//
//	go run ./loadtest ingest [flags]         open-loop ingest load, then the worker's drain rate
//	go run ./loadtest echo-baseline [flags]  the same load against a bare in-process net/http server
//
// It owns nothing of the service, and of its packages imports only the generated HTTP client: it
// speaks only the HTTP contract in DESIGN.md (POST /events/ingest, /events/ingest/batch,
// GET /metrics, and GET /events/{id} to read a sample of its events back after the drain).
// Traffic goes only to loopback addresses, and every run stops by itself.
//
// Exit status: 0 a completed run; 1 any error, an unfinished drain, a sampled event read back
// not COMPLETED, or an interrupted run;
// 2 bad flags or a non-loopback -url.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Named limits: every run is bounded, and latency samples are preallocated from them.
const (
	rateMax           = 1_000_000 // events/s
	durationMax       = time.Hour
	batchSizeMax      = 1000 // the API's batch limit
	workersMax        = 10_000
	drainTimeoutMax   = time.Hour
	requestTimeoutMax = 5 * time.Minute
	requestsMax       = 10_000_000 // latency samples kept: 80 MB at most
	drainPollDefault  = 500 * time.Millisecond
)

const (
	exitOK   = 0
	exitFail = 1
	exitBad  = 2
)

const (
	modeIngest = "ingest"
	modeEcho   = "echo-baseline"
)

// Config is one run's settings, filled from flags.
type Config struct {
	Mode           string
	URL            string // base URL of Daybook; set by echo-baseline to its own server
	Rate           int    // events per second
	Duration       time.Duration
	Batch          int // events per request; 1 uses POST /events/ingest
	Workers        int
	APIKey         string
	DrainTimeout   time.Duration // 0 skips the drain phase
	Source         string
	RequestTimeout time.Duration
	JSON           bool

	drainPoll time.Duration // not a flag; tests shorten it
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	switch {
	case c.Rate < 1 || c.Rate > rateMax:
		return fmt.Errorf("-rate must be in 1..%d events/s, got %d", rateMax, c.Rate)
	case c.Duration <= 0 || c.Duration > durationMax:
		return fmt.Errorf("-duration must be in (0, %s], got %s", durationMax, c.Duration)
	case c.Batch < 1 || c.Batch > batchSizeMax:
		return fmt.Errorf("-batch must be in 1..%d, got %d", batchSizeMax, c.Batch)
	case c.Workers < 1 || c.Workers > workersMax:
		return fmt.Errorf("-workers must be in 1..%d, got %d", workersMax, c.Workers)
	case c.DrainTimeout < 0 || c.DrainTimeout > drainTimeoutMax:
		return fmt.Errorf("-drain-timeout must be in [0, %s], got %s", drainTimeoutMax, c.DrainTimeout)
	case c.RequestTimeout <= 0 || c.RequestTimeout > requestTimeoutMax:
		return fmt.Errorf("-request-timeout must be in (0, %s], got %s", requestTimeoutMax, c.RequestTimeout)
	case c.Source == "":
		return errors.New("-source must not be empty")
	}
	if n := newSchedule(c).requests; n < 1 || n > requestsMax {
		return fmt.Errorf("-rate × -duration ÷ -batch gives %d requests; must be in 1..%d", n, requestsMax)
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, runs one mode and returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitBad
	}
	mode := args[0]
	if mode == "-h" || mode == "-help" || mode == "--help" || mode == "help" {
		usage(stdout)
		return exitOK
	}
	cfg, err := parseFlags(mode, args[1:], stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return exitBad
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var rep Report
	switch cfg.Mode {
	case modeIngest:
		lookupCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = checkLoopbackURL(lookupCtx, cfg.URL, defaultLookup)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "loadtest: refusing -url: %v\n", err)
			return exitBad
		}
		rep, err = runIngest(ctx, cfg, stderr)
	case modeEcho:
		rep, err = runEchoBaseline(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return exitFail
	}

	if cfg.JSON {
		// The table still goes out, on stderr, so stdout stays one JSON object for scripts.
		writeTable(stderr, rep)
		if err := writeJSON(stdout, rep); err != nil {
			fmt.Fprintf(stderr, "loadtest: write json: %v\n", err)
			return exitFail
		}
	} else {
		writeTable(stdout, rep)
	}
	if !rep.OK {
		return exitFail
	}
	return exitOK
}

// parseFlags builds a validated Config for mode from its flags.
func parseFlags(mode string, args []string, stderr io.Writer) (Config, error) {
	if mode != modeIngest && mode != modeEcho {
		usage(stderr)
		return Config{}, fmt.Errorf("unknown mode %q (want %s or %s)", mode, modeIngest, modeEcho)
	}
	cfg := Config{Mode: mode, drainPoll: drainPollDefault}
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if mode == modeIngest {
		fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "base URL of the running Daybook (loopback only)")
		fs.StringVar(&cfg.APIKey, "api-key", "", "an API key (events:write, and events:read for the read-back), sent as Authorization: Bearer")
		fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 60*time.Second,
			"how long to wait after sending for every accepted event to be COMPLETED (0 skips the drain phase and the read-back of a sample)")
	}
	fs.IntVar(&cfg.Rate, "rate", 2000, "target events per second (open loop)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	fs.IntVar(&cfg.Batch, "batch", 1, fmt.Sprintf("events per request: 1 = POST /events/ingest, 2..%d = POST /events/ingest/batch", batchSizeMax))
	fs.IntVar(&cfg.Workers, "workers", 64, "concurrent senders; a send due while all are busy is dropped and counted")
	fs.StringVar(&cfg.Source, "source", "order_updates", "event source")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", 10*time.Second, "per-request timeout, so the run stays bounded")
	fs.BoolVar(&cfg.JSON, "json", false, "print one JSON object on stdout (the table goes to stderr)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: go run ./loadtest <mode> [flags]

modes:
  ingest         open-loop ingest load against a running Daybook, then measure the drain
  echo-baseline  the same load against a bare in-process net/http server (reference figure)

run "go run ./loadtest <mode> -h" for the flags of a mode.
`)
}
