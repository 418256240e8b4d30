// Command daybook is the only binary: the API, the worker, and the
// operator's commands (migrate, dlq, openapi, archive, ...).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

const usage = `daybook — event ingestion engine and double-entry ledger

usage:
  daybook run                    API + worker in one process (the local default)
  daybook serve                  the HTTP API alone
  daybook worker                 consumers, outbox relay, stuck-event rescuer
  daybook migrate up|down [N]|status
  daybook dlq list [--all]       dead letters waiting for a replay
  daybook dlq replay ID|--all    put dead letters back on the queue
  daybook projections rebuild balances|orders|--all
                                 rebuild read models from the event log, verify, swap
  daybook reconcile              check entries, balances and the event log against each other
                                 (exit 0 clean, 1 with a report of each mismatch)
  daybook keys create --name N --scopes S1,S2 [--rate-limit R]
                                 make an API key; prints {id,key,name,scopes} once
  daybook keys list              keys without their secrets, with last use
  daybook keys revoke ID         revoke a key (servers honour it within 5 s)
  daybook archive get ID         print an event's archived payload
  daybook archive verify [--since RFC3339]
                                 check every archived payload against its segment
                                 (exit 0 clean, 1 with a line per mismatch or missing segment)
  daybook openapi [--json]       print the OpenAPI 3.1 document

configuration comes from the environment (see README.md).
`

// gcPercentDefault is the garbage collector's target unless GOGC is set:
// the heap may grow to three times what is live between collections, not
// twice. Measured on an 80,000-event burn-down (docs/PERFORMANCE.md): the
// worker's CPU per event fell 154-158 -> 127-132 us, its peak RSS rose
// 100 -> 136 MiB. Most of what it allocates dies within a batch.
const gcPercentDefault = 200

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercentDefault)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = serve(ctx, roleAPI|roleWorker)
	case "serve":
		err = serve(ctx, roleAPI)
	case "worker":
		err = serve(ctx, roleWorker)
	case "migrate":
		err = migrate(ctx, args[1:], stdout)
	case "dlq":
		err = dlq(ctx, args[1:], stdout)
	case "openapi":
		err = printOpenAPI(args[1:], stdout)
	case "projections":
		err = projectionsCmd(ctx, args[1:], stdout)
	case "keys":
		err = keysCmd(ctx, args[1:], stdout)
	case "reconcile":
		var mismatches int
		if mismatches, err = reconcileCmd(ctx, args[1:], stdout, nil); err == nil && mismatches > 0 {
			return 1 // the report above names each mismatch
		}
	case "archive":
		var problems int
		if problems, err = archiveCmd(ctx, args[1:], stdout); err == nil && problems > 0 {
			return 1 // verify printed a line per problem
		}
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "daybook: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var usageErr usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usageErr):
		fmt.Fprintf(stderr, "daybook: %v\n\n%s", err, usage)
		return 2
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintf(stderr, "daybook: %v\n", err)
		return 1
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }
