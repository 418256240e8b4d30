package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/daybook/daybook/projections"
)

// projectionsCmd runs `daybook projections rebuild NAME...|--all`: each
// projection is rebuilt from the event log, verified and swapped in, with a
// progress line per page of the log and a summary per projection.
func projectionsCmd(ctx context.Context, args []string, out io.Writer) error {
	usage := "projections rebuild needs a name (" + strings.Join(projections.Names(), ", ") + ") or --all"
	if len(args) == 0 || args[0] != "rebuild" {
		if len(args) > 0 {
			return usageError{fmt.Sprintf("projections: unknown subcommand %q; %s", args[0], usage)}
		}
		return usageError{usage}
	}
	names := args[1:]
	switch {
	case len(names) == 0:
		return usageError{usage}
	case slices.Contains(names, "--all"):
		if len(names) != 1 {
			return usageError{"projections rebuild takes names or --all, not both"}
		}
		names = projections.Names()
	}
	for _, name := range names {
		if !slices.Contains(projections.Names(), name) {
			return usageError{fmt.Sprintf("projections rebuild: unknown projection %q; %s", name, usage)}
		}
	}

	pool, err := openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()

	for _, name := range names {
		report, err := projections.Rebuild(ctx, pool, name, func(done, total int64) {
			fmt.Fprintf(out, "%s: %d/%d events\n", name, done, total)
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: rebuilt from %d events, verified: %d rows, %d corrected\n",
			report.Name, report.EventsRead, report.Rows, report.Changed)
	}
	return nil
}
