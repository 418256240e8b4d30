package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/config"
	"github.com/daybook/daybook/ingest"
)

// openArchive opens the store DAYBOOK_ARCHIVE_URL names, once: `daybook run`'s
// API and worker share it (on S3, one client and one bucket check). The app
// closes it.
func (a *app) openArchive() (archive.Store, error) {
	if a.archive != nil {
		return a.archive, nil
	}
	store, err := archive.Open(a.cfg.ArchiveURL)
	if err != nil {
		return nil, err
	}
	if c, ok := store.(io.Closer); ok {
		a.closers = append(a.closers, c)
	}
	a.archive = store
	return store, nil
}

// archiveCmd runs `daybook archive get ID` and `daybook archive verify
// [--since RFC3339]`. problems is what verify found; the caller turns a
// positive count into exit status 1, as reconcile does.
func archiveCmd(ctx context.Context, args []string, out io.Writer) (problems int, err error) {
	if len(args) == 0 {
		return 0, usageError{"archive needs get ID or verify [--since RFC3339]"}
	}
	switch args[0] {
	case "get":
		return 0, archiveGet(ctx, args[1:], out)
	case "verify":
		return archiveVerify(ctx, args[1:], out)
	default:
		return 0, usageError{fmt.Sprintf("archive: unknown subcommand %q", args[0])}
	}
}

// archiveStores opens the database (migrated, so that the pointer columns
// exist) and the archive. close releases both.
func archiveStores(ctx context.Context) (events *ingest.Store, store archive.Store, close func(), err error) {
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, nil, nil, err
	}
	store, err = archive.Open(cfg.ArchiveURL)
	if err != nil {
		return nil, nil, nil, err
	}
	pool, err := openMigratedPool(ctx)
	if err != nil {
		if c, ok := store.(io.Closer); ok {
			c.Close()
		}
		return nil, nil, nil, err
	}
	return ingest.NewStore(pool), store, func() {
		pool.Close()
		if c, ok := store.(io.Closer); ok {
			c.Close()
		}
	}, nil
}

// archiveGet prints the archived payload of one event, as
// GET /events/{id}/payload answers it.
func archiveGet(ctx context.Context, args []string, out io.Writer) error {
	if len(args) != 1 {
		return usageError{"archive get takes one event ID"}
	}
	id, err := uuid.Parse(args[0])
	if err != nil {
		return usageError{"archive get: " + args[0] + " is not an event id (a UUID)"}
	}
	events, store, closeAll, err := archiveStores(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	rec, err := events.Get(ctx, id)
	if errors.Is(err, ingest.ErrNotFound) {
		return fmt.Errorf("no event with id %s", id)
	}
	if err != nil {
		return err
	}
	e, err := ingest.ReadArchived(ctx, store, rec)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", e.Payload)
	return err
}

// verifyReport counts what archive verify found.
type verifyReport struct {
	events     int
	segments   map[string]bool // every segment named by a checked pointer
	mismatches int             // events whose archived bytes are not theirs
	missing    map[string]bool // segments the archive does not hold
	missingFor int             // events whose segment is missing
}

// fetched is a segment read once for every pointer into it on a page.
type fetched struct {
	segment *archive.Segment
	err     error
}

// archiveVerify walks every COMPLETED event with a pointer, in id order a
// page at a time, reads each segment once per page (and keeps the previous
// page's, since one batch's events straddle pages), and checks every line
// against its SHA-256 and its event id. Each problem gets a line, then a
// summary; problems is the number of events with one.
func archiveVerify(ctx context.Context, args []string, out io.Writer) (problems int, err error) {
	fs := flag.NewFlagSet("archive verify", flag.ContinueOnError)
	sinceText := fs.String("since", "", "check only events completed at or after this time (RFC 3339)")
	if err := keysFlags(fs, args, out); err != nil {
		return 0, err
	}
	if fs.NArg() > 0 {
		return 0, usageError{fmt.Sprintf("archive verify: unexpected argument %q", fs.Arg(0))}
	}
	var since time.Time
	if *sinceText != "" {
		if since, err = time.Parse(time.RFC3339Nano, *sinceText); err != nil {
			return 0, usageError{"archive verify: --since wants an RFC 3339 time, such as 2026-01-02T15:04:05Z"}
		}
	}
	events, store, closeAll, err := archiveStores(ctx)
	if err != nil {
		return 0, err
	}
	defer closeAll()

	r := verifyReport{segments: map[string]bool{}, missing: map[string]bool{}}
	var previous map[string]fetched
	after := uuid.Nil
	for more := true; more; {
		var refs []ingest.ArchivedRef
		refs, more, err = events.ListArchived(ctx, ingest.ArchivedParams{After: after, CompletedSince: since, Limit: ingest.ListLimitMax})
		if err != nil {
			return 0, err
		}
		current := map[string]fetched{}
		for _, ref := range refs {
			key := ref.Archive.Segment
			f, ok := current[key]
			if !ok {
				if f, ok = previous[key]; !ok {
					f.segment, f.err = archive.ReadSegment(ctx, store, key)
				}
				current[key] = f
			}
			r.events++
			r.segments[key] = true
			if err := r.check(out, ref, f); err != nil {
				return 0, err
			}
		}
		previous = current
		if len(refs) > 0 {
			after = refs[len(refs)-1].ID
		}
	}
	unarchived, err := events.CountUnarchived(ctx, since)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(out, "checked %d events in %d segments: %d mismatches, %d missing segments\n",
		r.events, len(r.segments), r.mismatches, len(r.missing))
	if unarchived > 0 {
		fmt.Fprintf(out, "%d completed events have no segment pointer (completed before segments): not checked\n", unarchived)
	}
	return r.mismatches + r.missingFor, nil
}

// check reports one event's problem, if it has one. An error other than a
// missing or corrupt segment (the archive cannot be read) stops the walk:
// its events were not checked, so no clean summary may follow.
func (r *verifyReport) check(out io.Writer, ref ingest.ArchivedRef, f fetched) error {
	switch {
	case errors.Is(f.err, archive.ErrNotFound):
		r.missing[ref.Archive.Segment] = true
		r.missingFor++
		fmt.Fprintf(out, "missing %s: segment %s is not in the archive\n", ref.ID, ref.Archive.Segment)
		return nil
	case errors.Is(f.err, archive.ErrCorrupt):
		r.mismatches++
		fmt.Fprintf(out, "mismatch %s: %v\n", ref.ID, f.err)
		return nil
	case f.err != nil:
		return fmt.Errorf("verify event %s: %w", ref.ID, f.err)
	}
	line, err := f.segment.Line(ref.Archive)
	if err == nil {
		_, err = ingest.DecodeArchived(ref.ID, line)
	}
	if err != nil {
		r.mismatches++
		fmt.Fprintf(out, "mismatch %s: %v\n", ref.ID, err)
	}
	return nil
}
