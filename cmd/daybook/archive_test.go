package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/testdb"
)

// archived is a database and a file archive holding events that the real
// processor completed, for `daybook archive` to read.
type archived struct {
	t     *testing.T
	pool  *pgxpool.Pool
	dbURL string
	dir   string
	store *archive.FileStore
	proc  *ingest.Processor
}

func newArchived(t *testing.T) *archived {
	t.Helper()
	pool, dbURL := testdb.NewWithURL(t)
	dir := t.TempDir()
	store, err := archive.NewFileStore(dir)
	require.NoError(t, err)
	proc, err := ingest.NewProcessor(pool, ingest.NewStore(pool), store, ingest.ProcessorConfig{MaxAttempts: 3})
	require.NoError(t, err)
	return &archived{t: t, pool: pool, dbURL: dbURL, dir: dir, store: store, proc: proc}
}

// batch processes one batch of events with these payloads and returns them.
func (a *archived) batch(payloads ...string) []ingest.Event {
	a.t.Helper()
	events := make([]ingest.Event, len(payloads))
	for i, p := range payloads {
		id := uuid.Must(uuid.NewV7())
		events[i] = ingest.Event{
			ID: id, IdempotencyKey: "cli-" + id.String(), Source: "clicks", Type: "click",
			Payload: json.RawMessage(p), ReceivedAt: time.Now().UTC(),
		}
	}
	for _, r := range a.proc.ProcessBatch(a.t.Context(), events) {
		require.Equal(a.t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, r)
	}
	return events
}

func (a *archived) segment(id uuid.UUID) string {
	a.t.Helper()
	rec, err := ingest.NewStore(a.pool).Get(a.t.Context(), id)
	require.NoError(a.t, err)
	require.NotNil(a.t, rec.Archive)
	return rec.Archive.Segment
}

// daybook runs `daybook args...` on this database and archive.
func (a *archived) daybook(args ...string) (stdout, stderr string, code int) {
	a.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+a.dbURL, "DAYBOOK_ARCHIVE_URL=file://"+a.dir, "DAYBOOK_LOG_LEVEL=warn")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	var exit *exec.ExitError
	if err := cmd.Run(); err != nil && !errors.As(err, &exit) {
		require.NoError(a.t, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

func TestArchiveGet_PrintsThePayloadOrSaysInOneLineWhyNot(t *testing.T) {
	t.Parallel()
	a := newArchived(t)
	events := a.batch(`{"status":"paid","amount":"12.30"}`, `{"x":2}`)

	stdout, stderr, code := a.daybook("archive", "get", events[0].ID.String())
	require.Equal(t, 0, code, stderr)
	require.True(t, strings.HasSuffix(stdout, "}\n"), "stdout %q", stdout)
	require.JSONEq(t, `{"status":"paid","amount":"12.30"}`, stdout)
	require.Empty(t, stderr)
	stdout, _, code = a.daybook("archive", "get", events[1].ID.String())
	require.Equal(t, 0, code)
	require.Equal(t, "{\"x\":2}\n", stdout, "the archived bytes: compact JSON")

	unknown := uuid.Must(uuid.NewV7())
	stdout, stderr, code = a.daybook("archive", "get", unknown.String())
	require.Equal(t, 1, code)
	require.Empty(t, stdout)
	require.Equal(t, "daybook: no event with id "+unknown.String()+"\n", stderr)

	_, stderr, code = a.daybook("archive", "get", "not-a-uuid")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "is not an event id")

	require.NoError(t, os.Remove(a.store.Path(a.segment(events[0].ID))))
	stdout, stderr, code = a.daybook("archive", "get", events[0].ID.String())
	require.Equal(t, 1, code)
	require.Empty(t, stdout)
	require.Equal(t, 1, strings.Count(stderr, "\n"), stderr)
	require.Contains(t, stderr, "archive object not found")
}

func TestArchiveVerify_CleanArchiveExitsZero(t *testing.T) {
	t.Parallel()
	a := newArchived(t)
	a.batch(`{"n":1}`, `{"n":2}`, `{"n":3}`)
	a.batch(`{"n":4}`)

	stdout, stderr, code := a.daybook("archive", "verify")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "checked 4 events in 2 segments: 0 mismatches, 0 missing segments\n", stdout)

	stdout, _, code = a.daybook("archive", "verify", "--since", time.Now().Add(time.Hour).Format(time.RFC3339))
	require.Equal(t, 0, code)
	require.Equal(t, "checked 0 events in 0 segments: 0 mismatches, 0 missing segments\n", stdout)

	_, stderr, code = a.daybook("archive", "verify", "--since", "yesterday")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "--since wants an RFC 3339 time")
}

// One segment overwritten with other bytes, another deleted: verify names
// every event they hold and exits 1.
func TestArchiveVerify_FindsACorruptedAndAMissingSegment(t *testing.T) {
	t.Parallel()
	a := newArchived(t)
	corrupted := a.batch(`{"n":1}`, `{"n":2}`)
	lost := a.batch(`{"n":3}`)
	fine := a.batch(`{"n":4}`, `{"n":5}`)
	// An event completed before segments has no pointer: counted, not checked.
	id := uuid.Must(uuid.NewV7())
	_, err := a.pool.Exec(t.Context(), `INSERT INTO ingestion_events (id, idempotency_key, source, type, payload, received_at)
		VALUES ($1, $2, 'clicks', 'click', '{}', now())`, id, "old-"+id.String())
	require.NoError(t, err)
	_, err = a.pool.Exec(t.Context(), `UPDATE ingestion_events SET status = 'PROCESSING', attempts = 1 WHERE id = $1`, id)
	require.NoError(t, err)
	_, err = a.pool.Exec(t.Context(), `UPDATE ingestion_events SET status = 'COMPLETED' WHERE id = $1`, id)
	require.NoError(t, err)

	// Same lines, swapped: a valid segment whose every pointer lands on other bytes.
	key := a.segment(corrupted[0].ID)
	w := archive.NewSegmentWriter(key)
	for _, e := range []ingest.Event{corrupted[1], corrupted[0]} {
		rec, err := ingest.NewStore(a.pool).Get(t.Context(), e.ID)
		require.NoError(t, err)
		line, err := rec.Encode()
		require.NoError(t, err)
		_, err = w.Append(line)
		require.NoError(t, err)
	}
	body, err := w.Close()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(a.store.Path(key), body, 0o600))
	lostKey := a.segment(lost[0].ID)
	require.NoError(t, os.Remove(a.store.Path(lostKey)))

	stdout, stderr, code := a.daybook("archive", "verify")

	require.Equal(t, 1, code, stderr)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	require.Len(t, lines, 5, stdout)
	problems := lines[:3]
	sort.Strings(problems)
	want := []string{
		"mismatch " + corrupted[0].ID.String() + ": ",
		"mismatch " + corrupted[1].ID.String() + ": ",
		"missing " + lost[0].ID.String() + ": segment " + lostKey + " is not in the archive",
	}
	sort.Strings(want)
	for i := range want {
		require.True(t, strings.HasPrefix(problems[i], want[i]), "%q does not start with %q", problems[i], want[i])
	}
	require.Contains(t, problems[0]+problems[1], "SHA-256 differs")
	require.Equal(t, "checked 5 events in 3 segments: 2 mismatches, 1 missing segments", lines[3])
	require.Equal(t, "1 completed events have no segment pointer (completed before segments): not checked", lines[4])
	require.NotContains(t, stdout, fine[0].ID.String())
}

// The whole path through the real binary: the worker archives, the API and
// the command read back the same payload.
func TestRun_IngestedEventsPayloadReadsBackThroughTheAPIAndTheCommand(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	in.start()
	code, a := in.ingest(`{"event_id":"arch-1","source":"order_updates","type":"order.updated","order_id":"o-1","payload":{"status":"paid","amount":"12.30"}}`)
	require.Equal(t, http.StatusAccepted, code)
	require.Eventually(t, func() bool { return in.eventStatus(a.ID) == "COMPLETED" }, 10*time.Second, 20*time.Millisecond)

	resp := in.send(http.MethodGet, "/events/"+a.ID+"/payload", "")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.JSONEq(t, `{"status":"paid","amount":"12.30"}`, string(body))

	for args, want := range map[string]string{
		"archive get " + a.ID: string(body) + "\n",
		"archive verify":      "checked 1 events in 1 segments: 0 mismatches, 0 missing segments\n",
	} {
		cmd := exec.Command(binary, strings.Fields(args)...)
		cmd.Env = in.env
		out, err := cmd.Output()
		require.NoError(t, err, args)
		require.Equal(t, want, string(out), args)
	}
	in.sigterm()
}

// `daybook run` opens the archive once: its API and worker share one store
// (on S3 one client, one bucket check).
func TestOpenArchive_RunsAPIAndWorkerOnOneStore(t *testing.T) {
	t.Parallel()
	a := &app{}
	a.cfg.ArchiveURL = "file://" + t.TempDir()
	first, err := a.openArchive()
	require.NoError(t, err)
	second, err := a.openArchive()
	require.NoError(t, err)
	require.Same(t, first.(*archive.FileStore), second.(*archive.FileStore))
}
