package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/daybook/daybook/api"
	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/migrations"
)

func migrate(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError{"migrate needs up, down [N] or status"}
	}
	pool, err := openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	m, err := migrations.New(pool, migrations.Files())
	if err != nil {
		return err
	}
	switch args[0] {
	case "up":
		applied, err := m.Up(ctx)
		for _, mig := range applied {
			fmt.Fprintf(out, "applied %04d_%s\n", mig.Version, mig.Name)
		}
		if err == nil && len(applied) == 0 {
			fmt.Fprintln(out, "up to date")
		}
		return err
	case "down":
		steps := 1
		if len(args) > 1 {
			if steps, err = strconv.Atoi(args[1]); err != nil || steps < 1 {
				return usageError{"migrate down takes a positive number of steps"}
			}
		}
		reverted, err := m.Down(ctx, steps)
		for _, mig := range reverted {
			fmt.Fprintf(out, "reverted %04d_%s\n", mig.Version, mig.Name)
		}
		return err
	case "status":
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED AT")
		for _, s := range st {
			at := "pending"
			if s.Applied {
				at = s.AppliedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%04d\t%s\t%s\n", s.Version, s.Name, at)
		}
		return tw.Flush()
	default:
		return usageError{fmt.Sprintf("migrate: unknown subcommand %q", args[0])}
	}
}

func dlq(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError{"dlq needs list or replay"}
	}
	a, err := open(ctx)
	if err != nil {
		return err
	}
	defer a.close()
	switch args[0] {
	case "list":
		all := len(args) > 1 && args[1] == "--all"
		letters, _, err := deadletter.NewStore(a.pool).List(ctx, deadletter.ListParams{Waiting: !all, Limit: deadletter.ListLimitMax})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tEVENT\tCREATED\tREPLAYED\tREASON")
		for _, l := range letters {
			event, replayed := "-", "-"
			if l.EventID != nil {
				event = l.EventID.String()
			}
			if l.ReplayedAt != nil {
				replayed = l.ReplayedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.ID, event, l.CreatedAt.UTC().Format(time.RFC3339), replayed, oneLine(l.Reason, 100))
		}
		fmt.Fprintf(tw, "%d dead letter(s)\n", len(letters))
		// Redriven messages wait in the wire's DLQ until a worker moves them here.
		if n, where, err := a.wire.redrivable(ctx); err != nil {
			return err
		} else if where != "" {
			fmt.Fprintf(tw, "%d message(s) in %s, moved here by the worker\n", n, where)
		}
		return tw.Flush()
	case "replay":
		if len(args) != 2 {
			return usageError{"dlq replay takes one ID or --all"}
		}
		r, err := a.replayer(ctx)
		if err != nil {
			return err
		}
		if args[1] == "--all" {
			done, failed, err := r.AllDeadLetters(ctx)
			fmt.Fprintf(out, "replayed %d dead letter(s)\n", len(done))
			for id, ferr := range failed {
				fmt.Fprintf(out, "not replayed %s: %v\n", id, ferr)
			}
			if err == nil && len(failed) > 0 {
				err = fmt.Errorf("%d dead letter(s) not replayed", len(failed))
			}
			return err
		}
		id, err := uuid.Parse(args[1])
		if err != nil {
			return usageError{"dlq replay: " + args[1] + " is not a dead letter id (a UUID)"}
		}
		if _, err := r.DeadLetter(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(out, "replayed %s\n", id)
		return nil
	default:
		return usageError{fmt.Sprintf("dlq: unknown subcommand %q", args[0])}
	}
}

func oneLine(s string, max int) string {
	b := []rune(s)
	for i, r := range b {
		if r == '\n' || r == '\t' {
			b[i] = ' '
		}
	}
	if len(b) > max {
		return string(b[:max-1]) + "…"
	}
	return string(b)
}

func printOpenAPI(args []string, out io.Writer) error {
	doc := api.OpenAPI()
	if len(args) > 0 && args[0] == "--json" {
		b, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, string(b))
		return err
	}
	if len(args) > 0 {
		return usageError{"openapi takes only --json"}
	}
	b, err := doc.YAML()
	if err != nil {
		return errors.Join(errors.New("render OpenAPI YAML"), err)
	}
	_, err = out.Write(b)
	return err
}
