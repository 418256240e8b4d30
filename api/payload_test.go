package api_test

import (
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/ingest"
)

// processed runs payloads through the real processor in one batch, archiving
// into the server's archive, and returns the completed records.
func (s *testServer) processed(payloads ...string) []ingest.Record {
	s.t.Helper()
	proc, err := ingest.NewProcessor(s.pool, s.events, s.archive, ingest.ProcessorConfig{MaxAttempts: 3})
	require.NoError(s.t, err)
	events := make([]ingest.Event, len(payloads))
	for i, p := range payloads {
		id := uuid.Must(uuid.NewV7())
		events[i] = ingest.Event{
			ID: id, IdempotencyKey: "payload-" + id.String(), Source: "clicks", Type: "click",
			Payload: json.RawMessage(p), ReceivedAt: time.Now().UTC(),
		}
	}
	recs := make([]ingest.Record, len(events))
	for i, r := range proc.ProcessBatch(s.t.Context(), events) {
		require.Equal(s.t, ingest.BatchResult{Outcome: ingest.OutcomeCompleted}, r)
		recs[i], err = s.events.Get(s.t.Context(), events[i].ID)
		require.NoError(s.t, err)
	}
	return recs
}

func TestGetEventPayload_AnswersTheArchivedPayloadByteForByte(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	recs := s.processed(
		`{"status":"paid","amount":"12.30","exact":1.50,"big":12345678901234567890,"note":"<café & \u2713>"}`,
		`{"x":2}`,
	)

	for i, want := range []string{
		`{"status":"paid","amount":"12.30","exact":1.50,"big":12345678901234567890,"note":"<café & ✓>"}`,
		`{"x":2}`,
	} {
		r := s.get("/events/" + recs[i].ID.String() + "/payload")

		require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
		require.Equal(t, "application/json", r.header.Get("Content-Type"))
		require.JSONEq(t, want, string(r.body))
		archived, err := ingest.ReadArchived(t.Context(), s.archive, recs[i])
		require.NoError(t, err)
		require.Equal(t, string(archived.Payload), string(r.body), "the archived bytes, not a re-encoding")
	}
	require.Contains(t, string(s.get("/events/"+recs[0].ID.String()+"/payload").body), "1.50", "numbers keep their text")
}

func TestGetEventPayload_UnknownOrNotArchivedEventAnswers404SayingWhich(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	unknown := uuid.Must(uuid.NewV7()).String()
	processing := s.storeEvent("not-yet")
	failed := s.storeEvent("failed")
	s.failEvent(failed, "boom")
	before := s.storeEvent("before-segments")
	s.completeEvent(before) // completed without a pointer, as events were before segments

	for path, detail := range map[string]string{
		unknown:                "no event with id " + unknown,
		processing.ID.String(): "event " + processing.ID.String() + " is PROCESSING: its payload is archived once it is COMPLETED: event has no segment pointer",
		failed.ID.String():     "event " + failed.ID.String() + " is FAILED: its payload is archived once it is COMPLETED: event has no segment pointer",
		before.ID.String():     "event " + before.ID.String() + " was completed before payloads were archived in segments: event has no segment pointer",
	} {
		p := requireProblem(t, s.get("/events/"+path+"/payload"), http.StatusNotFound)
		require.Equal(t, detail, p.Detail)
	}
	p := requireProblem(t, s.get("/events/not-a-uuid/payload"), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"path.id"}, p.locations())
}

func TestGetEventPayload_NeedsTheEventsReadScope(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	rec := s.processed(`{"secret":"s"}`)[0]
	path := "/events/" + rec.ID.String() + "/payload"
	writer, reader := s.newKey(apikey.ScopeEventsWrite), s.newKey(apikey.ScopeEventsRead)

	requireProblem(t, s.get(path), http.StatusUnauthorized)
	p := requireProblem(t, s.get(path, bearer(writer)...), http.StatusForbidden)
	require.Contains(t, p.Detail, "lacks the scope events:read")
	r := s.get(path, bearer(reader)...)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	require.JSONEq(t, `{"secret":"s"}`, string(r.body))
}

// Never other bytes than those archived: a segment whose bytes changed, or
// that is gone, is a 500 problem, and the other bytes never reach the client.
func TestGetEventPayload_CorruptedOrMissingSegmentAnswers500(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	recs := s.processed(`{"n":1}`, `{"n":2}`)
	key := recs[0].Archive.Segment
	require.Equal(t, key, recs[1].Archive.Segment)

	// The segment overwritten with one of the same shape whose lines are
	// swapped: each pointer now lands on the other event's bytes.
	w := archive.NewSegmentWriter(key)
	for _, rec := range []ingest.Record{recs[1], recs[0]} {
		line, err := rec.Encode()
		require.NoError(t, err)
		_, err = w.Append(line)
		require.NoError(t, err)
	}
	body, err := w.Close()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(s.archive.Path(key), body, 0o600))
	for _, rec := range recs {
		r := s.get("/events/" + rec.ID.String() + "/payload")
		p := requireProblem(t, r, http.StatusInternalServerError)
		require.Equal(t, "the archived bytes of event "+rec.ID.String()+" do not match the SHA-256 recorded with them", p.Detail)
		require.NotContains(t, string(r.body), `"n"`)
	}

	require.NoError(t, os.Remove(s.archive.Path(key)))
	p := requireProblem(t, s.get("/events/"+recs[0].ID.String()+"/payload"), http.StatusInternalServerError)
	require.Equal(t, "the segment holding the payload of event "+recs[0].ID.String()+" is missing from the archive", p.Detail)
}

// An archive that cannot be read now (here a directory where the segment
// file was: neither missing nor corrupt) is a 503 to retry, not a 500, and
// the store's own error stays in the log.
func TestGetEventPayload_UnreadableArchiveAnswers503WithRetryAfter(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	rec := s.processed(`{"n":1}`)[0]
	path := s.archive.Path(rec.Archive.Segment)
	require.NoError(t, os.Remove(path))
	require.NoError(t, os.Mkdir(path, 0o700))

	r := s.get("/events/" + rec.ID.String() + "/payload")
	p := requireProblem(t, r, http.StatusServiceUnavailable)
	require.Equal(t, "cannot read the archive now", p.Detail)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.NotContains(t, string(r.body), "directory")
}
