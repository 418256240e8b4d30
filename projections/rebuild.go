package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/daybook/daybook/eventstore"
)

// Projections that Rebuild knows, by name.
const (
	ProjectionBalances = "balances"
	ProjectionOrders   = "orders"
)

// ErrUnknownProjection means Rebuild was asked for a name Names does not list.
var ErrUnknownProjection = errors.New("unknown projection")

// ErrRebuildMismatch means the freshly folded table disagreed with the
// independent check; nothing was swapped in.
var ErrRebuildMismatch = errors.New("rebuilt projection failed verification")

const (
	// rebuildPageSize is how many log events one read of a rebuild takes.
	rebuildPageSize = 5000
	// rebuildLockTimeout bounds the wait for the live table's lock: while a
	// rebuild waits for it, every writer queues behind the rebuild.
	rebuildLockTimeout = 10 * time.Second
	// rebuildMismatchShown bounds how many mismatching keys an error names.
	rebuildMismatchShown = 5
)

// RebuildReport says what a rebuild did.
type RebuildReport struct {
	Name string
	// EventsRead counts the log events folded, the tail read under the lock included.
	EventsRead int64
	// Rows is the number of rows the rebuilt projection holds.
	Rows int64
	// Changed counts the live rows the swap corrected: updated, inserted or deleted.
	Changed int64
}

// Progress is told, after every page of the log, how many events have been
// folded and how many the log held of the projection's types (at the start:
// done may pass total when writers append meanwhile).
type Progress func(done, total int64)

// Names lists the projections Rebuild knows, in the order --all runs them.
func Names() []string { return []string{ProjectionBalances, ProjectionOrders} }

// Rebuild rebuilds the projection called name; see RebuildOrders.
func Rebuild(ctx context.Context, pool *pgxpool.Pool, name string, progress Progress) (RebuildReport, error) {
	switch name {
	case ProjectionBalances:
		return RebuildBalances(ctx, pool, progress)
	case ProjectionOrders:
		return RebuildOrders(ctx, pool, progress)
	default:
		return RebuildReport{Name: name}, fmt.Errorf("rebuild %q (known: %s): %w", name, strings.Join(Names(), ", "), ErrUnknownProjection)
	}
}

// rebuilder is one projection's part of a rebuild; runRebuild does the rest.
type rebuilder struct {
	name  string
	live  string   // the live table, locked at swap time
	fresh string   // the temporary table the log is folded into
	types []string // the event types the projection reads
	// create makes the fresh table, empty.
	create string
	// fold applies a page of events, in position order, to the fresh table.
	fold func(ctx context.Context, tx pgx.Tx, page []eventstore.Recorded) error
	// verify checks the fresh table against the log by an independent route.
	verify func(ctx context.Context, tx pgx.Tx) error
	// swap makes the live table equal the fresh one, returning the rows it changed.
	swap func(ctx context.Context, tx pgx.Tx) (int64, error)
}

// runRebuild folds the whole log into a fresh temporary table, then, in one
// transaction, locks the live table, folds the log's tail, verifies the fresh
// table and corrects the live one to equal it.
//
// Writers keep appending while the bulk of the log is read without any lock.
// LOCK TABLE ... IN EXCLUSIVE MODE waits for every writer that has already
// touched the live table to commit and blocks the next ones (readers go on).
// Events appended between the last page read and the lock are therefore
// committed and visible once the lock is held: they are re-applied by folding
// the tail (position > the last position read) under the lock, before the
// verify and the swap. A writer that appended an event but had not yet
// reached the live table when the lock was taken commits after the swap and
// applies its event to the swapped table itself, so the tail need not hold it.
//
// Positions come from an identity column, assigned at insert rather than at
// commit, so an event whose transaction was still open while the pages were
// read could sit below the last position read and be missed by both reads.
// The fold (balances: a version gap in an account) or the verification under
// the lock (orders) then disagrees, and the rebuild fails with
// ErrRebuildMismatch, leaving the live table untouched: run it again.
//
// The verification runs under the lock, so that it sees exactly what is
// swapped in; on a very long log it holds the writers for its duration.
func runRebuild(ctx context.Context, pool *pgxpool.Pool, r rebuilder, progress Progress) (RebuildReport, error) {
	report := RebuildReport{Name: r.name}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	// The fresh table is a temporary table, so it lives on one connection: a
	// connection of its own, closed at the end, which drops the table with it
	// whatever happened.
	pooled, err := pool.Acquire(ctx)
	if err != nil {
		return report, fmt.Errorf("rebuild %s: acquire connection: %w", r.name, err)
	}
	conn := pooled.Hijack()
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()

	if _, err := conn.Exec(ctx, r.create); err != nil {
		return report, fmt.Errorf("rebuild %s: create %s: %w", r.name, r.fresh, err)
	}
	var total int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM event_log WHERE event_type = ANY($1)`, r.types).Scan(&total); err != nil {
		return report, fmt.Errorf("rebuild %s: count events: %w", r.name, err)
	}
	progress(0, total)

	var last int64
	// foldPage folds the next page after last, reporting whether it was the
	// log's last page.
	foldPage := func(tx pgx.Tx) (done bool, err error) {
		page, err := eventstore.Read(ctx, tx, eventstore.ReadParams{AfterPosition: last, Types: r.types, Limit: rebuildPageSize})
		if err != nil {
			return false, err
		}
		if len(page) > 0 {
			if err := r.fold(ctx, tx, page); err != nil {
				return false, err
			}
			last = page[len(page)-1].Position
			report.EventsRead += int64(len(page))
			progress(report.EventsRead, max(total, report.EventsRead))
		}
		return len(page) < rebuildPageSize, nil
	}
	// The bulk, one short transaction per page: no snapshot stays open for
	// long and no lock is held. The loop is bounded by the log's length: each
	// page moves last forward.
	for done := false; !done; {
		before := last
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) (err error) {
			done, err = foldPage(tx)
			return err
		}); err != nil {
			return report, fmt.Errorf("rebuild %s: fold log after position %d: %w", r.name, before, err)
		}
	}

	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) (err error) {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = '%dms'`, rebuildLockTimeout.Milliseconds())); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE `+r.live+` IN EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("lock %s: %w", r.live, err)
		}
		for done := false; !done; {
			if done, err = foldPage(tx); err != nil {
				return fmt.Errorf("fold log tail after position %d: %w", last, err)
			}
		}
		if err := r.verify(ctx, tx); err != nil {
			return err
		}
		if report.Changed, err = r.swap(ctx, tx); err != nil {
			return fmt.Errorf("swap into %s: %w", r.live, err)
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM `+r.live).Scan(&report.Rows)
	})
	if err != nil {
		report.Changed, report.Rows = 0, 0 // rolled back: nothing was corrected
		return report, fmt.Errorf("rebuild %s: %w", r.name, err)
	}
	return report, nil
}

// mismatches runs query, which lists keys that disagree, and turns any into
// an ErrRebuildMismatch naming the first few.
func mismatches(ctx context.Context, tx pgx.Tx, what, query string, args ...any) error {
	rows, err := tx.Query(ctx, query+fmt.Sprintf(` LIMIT %d`, rebuildMismatchShown+1), args...)
	if err != nil {
		return fmt.Errorf("verify %s: %w", what, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("verify %s: %w", what, err)
	}
	if len(keys) == 0 {
		return nil
	}
	shown := keys[:min(len(keys), rebuildMismatchShown)]
	more := ""
	if len(keys) > rebuildMismatchShown {
		more = ", ..."
	}
	return fmt.Errorf("%s disagrees for %s%s: %w", what, strings.Join(shown, ", "), more, ErrRebuildMismatch)
}
