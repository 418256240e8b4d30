package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// result is one scenario's figures, faults and verdict.
type result struct {
	name string
	wall time.Duration
	// failOpen: the API admits without its fast duplicate check (SQS mode
	// with Redis gone), so a repeat sent before the first copy was stored is
	// answered 202 again, under an id that is never stored; Postgres's
	// UNIQUE(idempotency_key) stores and processes the event once.
	failOpen bool

	events struct {
		sent, accepted, completed, deadLettered, lost, duplicated, stuck int
		// poison events break the order_updates rule on purpose; validDeadLettered
		// are valid events that ended in the dead-letter queue anyway.
		poison, validDeadLettered int
		// storedUnconfirmed were stored although the client never saw them
		// accepted (a 503 or a connection failure after the gate took them).
		storedUnconfirmed int
		strayLetters      int
		// readmitted were answered 202 more than once while failOpen, and
		// stored once under one of their ids.
		readmitted      int
		dupSent, dup200 int64
	}
	transfers struct {
		sent, ok, refused, lost, duplicated int
		// unresolved requests ran out of retries on a 5xx or a connection
		// failure; unresolvedStored of them had moved the money after all.
		unresolved, unresolvedStored int
	}
	retries503, retriesConn int64

	reconcile string
	settled   string
	faults    []string
	notes     []string
	// problems fail the run, grouped by kind.
	problems map[string][]string
}

func (r *result) problem(kind, format string, args ...any) {
	if r.problems == nil {
		r.problems = map[string][]string{}
	}
	r.problems[kind] = append(r.problems[kind], fmt.Sprintf(format, args...))
}

func (r *result) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *result) fault(format string, args ...any) {
	r.faults = append(r.faults, fmt.Sprintf(format, args...))
}

func (r *result) ok() bool { return len(r.problems) == 0 }

// printTable writes the results as a Markdown table, then each scenario's
// details and problems.
func printTable(w io.Writer, results []*result, wall time.Duration) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | wall | events sent | accepted | completed | dead-lettered | lost | duplicated | stuck | transfers ok | lost | duplicated | reconcile | faults injected | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		verdict := "PASS"
		if !r.ok() {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s |\n",
			r.name, r.wall.Round(100*time.Millisecond), r.events.sent, r.events.accepted, r.events.completed,
			r.events.deadLettered, r.events.lost, r.events.duplicated, r.events.stuck,
			r.transfers.ok, r.transfers.lost, r.transfers.duplicated, r.reconcile, strings.Join(r.faults, "; "), verdict)
	}
	fmt.Fprintf(w, "\ntotal wall time %s\n", wall.Round(100*time.Millisecond))
	for _, r := range results {
		fmt.Fprintf(w, "\n%s: %s\n", r.name, r.settled)
		fmt.Fprintf(w, "  events: %d poison (dead-lettered on purpose), %d valid ones dead-lettered; %d deliberate duplicate sends, %d answered 200 duplicate; %d stored without a confirmed acceptance\n",
			r.events.poison, r.events.validDeadLettered, r.events.dupSent, r.events.dup200, r.events.storedUnconfirmed)
		fmt.Fprintf(w, "  transfers: %d sent, %d refused (4xx), %d unresolved after retries (%d of them stored); client retries: %d after 5xx, %d after connection failures\n",
			r.transfers.sent, r.transfers.refused, r.transfers.unresolved, r.transfers.unresolvedStored, r.retries503, r.retriesConn)
		for _, n := range r.notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		kinds := make([]string, 0, len(r.problems))
		for k := range r.problems {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, k := range kinds {
			list := r.problems[k]
			fmt.Fprintf(w, "  FAIL %s: %d\n", k, len(list))
			for _, p := range list[:min(len(list), problemsShownMax)] {
				fmt.Fprintf(w, "    %s\n", p)
			}
			if len(list) > problemsShownMax {
				fmt.Fprintf(w, "    ... and %d more\n", len(list)-problemsShownMax)
			}
		}
	}
}
