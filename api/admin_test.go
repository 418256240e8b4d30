package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
)

func TestAdminReplay_UnknownEventAnswers404(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	id := uuid.Must(uuid.NewV7()).String()

	p := requireProblem(t, s.do(http.MethodPost, "/admin/replay/"+id, nil), http.StatusNotFound)

	require.Equal(t, "no stored event with id "+id, p.Detail)
	require.Zero(t, s.xlen())
}

func TestAdminReplay_CompletedEventAnswers409(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	rec := s.storeEvent("done-1")
	s.completeEvent(rec)

	requireProblem(t, s.do(http.MethodPost, "/admin/replay/"+rec.ID.String(), nil), http.StatusConflict)

	require.Zero(t, s.xlen())
	after, err := s.events.Get(t.Context(), rec.ID)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusCompleted, after.Status)
	require.Equal(t, 1, after.Attempts)
}

func TestAdminReplay_FailedEventGoesBackToPendingAndOnTheQueue(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	rec := s.storeEvent("failed-1")
	s.failEvent(rec, "boom")

	r := s.do(http.MethodPost, "/admin/replay/"+rec.ID.String(), nil)

	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	after, err := s.events.Get(t.Context(), rec.ID)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusPending, after.Status)
	require.Equal(t, 0, after.Attempts)
	require.Equal(t, 1, after.Replays)
	requireEventBody(t, bodyOf(after), decodeEvent(t, r))

	require.EqualValues(t, 1, s.xlen())
	queued := s.streamEvents()[0]
	require.Equal(t, rec.ID, queued.ID)
	require.Equal(t, "failed-1", queued.IdempotencyKey)
	require.JSONEq(t, `{"status":"paid"}`, string(queued.Payload))
	require.Equal(t, "corr-failed-1", queued.CorrelationID)
}

func TestAdminReplay_NonUUIDAnswers422(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	p := requireProblem(t, s.do(http.MethodPost, "/admin/replay/42", nil), http.StatusUnprocessableEntity)

	require.Equal(t, []string{"path.id"}, p.locations())
}

// deadLetterBody is one item of GET /admin/dlq.
type deadLetterBody struct {
	ID          string            `json:"id"`
	MessageUUID string            `json:"message_uuid"`
	EventID     *string           `json:"event_id"`
	Topic       string            `json:"topic"`
	Reason      string            `json:"reason"`
	Payload     string            `json:"payload"`
	Metadata    map[string]string `json:"metadata"`
	CreatedAt   time.Time         `json:"created_at"`
	ReplayedAt  *time.Time        `json:"replayed_at"`
	ReplayCount int               `json:"replay_count"`
}

func dlqPage(t *testing.T, r reply) ([]deadLetterBody, *string) {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	require.Contains(t, fields(t, r), "next_cursor")
	var body struct {
		Items      []deadLetterBody `json:"items"`
		NextCursor *string          `json:"next_cursor"`
	}
	require.NoError(t, jsonUnmarshalStrict(r.body, &body), "body: %s", r.body)
	require.NotNil(t, body.Items)
	return body.Items, body.NextCursor
}

func TestAdminDLQ_ListsAndReplaysDeadLetter(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	ctx := t.Context()
	rec := s.storeEvent("dead-1")
	s.failEvent(rec, "payload.status missing")
	body, err := rec.Encode()
	require.NoError(t, err)
	letter, err := s.dead.Record(ctx, deadletter.Letter{
		MessageUUID: uuid.NewString(), EventID: &rec.ID, Topic: s.stream, Reason: "payload.status missing",
		Payload: body, Metadata: map[string]string{"correlation_id": "corr-dead-1"},
	})
	require.NoError(t, err)

	items, next := dlqPage(t, s.get("/admin/dlq"))
	require.Nil(t, next)
	require.Len(t, items, 1)
	eventID := rec.ID.String()
	require.True(t, letter.CreatedAt.Equal(items[0].CreatedAt))
	items[0].CreatedAt = time.Time{}
	require.Equal(t, deadLetterBody{
		ID: letter.ID.String(), MessageUUID: letter.MessageUUID, EventID: &eventID, Topic: s.stream,
		Reason: "payload.status missing", Payload: string(body), Metadata: map[string]string{"correlation_id": "corr-dead-1"},
	}, items[0])

	r := s.do(http.MethodPost, "/admin/dlq/replay", []byte(`{"ids":["`+letter.ID.String()+`"]}`))

	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	require.JSONEq(t, `{"replayed":["`+letter.ID.String()+`"],"failed":[]}`, string(r.body))
	require.EqualValues(t, 1, s.xlen())
	require.Equal(t, rec.ID, s.streamEvents()[0].ID)
	after, err := s.events.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Equal(t, ingest.StatusPending, after.Status)
	require.Equal(t, 1, after.Replays)

	items, _ = dlqPage(t, s.get("/admin/dlq"))
	require.Empty(t, items, "a replayed letter is no longer waiting")
	items, _ = dlqPage(t, s.get("/admin/dlq?all=true"))
	require.Len(t, items, 1)
	require.Equal(t, letter.ID.String(), items[0].ID)
	require.Equal(t, 1, items[0].ReplayCount)
	require.NotNil(t, items[0].ReplayedAt)

	// Again, with an unknown id and a non-UUID: each fails on its own.
	unknown := uuid.Must(uuid.NewV7()).String()
	r = s.do(http.MethodPost, "/admin/dlq/replay", []byte(`{"ids":["`+letter.ID.String()+`","`+unknown+`","nope"]}`))
	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	require.JSONEq(t, `{"replayed":[],"failed":[`+
		`{"id":"`+letter.ID.String()+`","error":"already replayed"},`+
		`{"id":"`+unknown+`","error":"no such dead letter"},`+
		`{"id":"nope","error":"not a UUID"}]}`, string(r.body))
	require.EqualValues(t, 1, s.xlen())
}

func TestAdminDLQ_ReplayAllRepublishesUndecodableLetter(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	letter, err := s.dead.Record(t.Context(), deadletter.Letter{
		MessageUUID: uuid.NewString(), Topic: s.stream, Reason: "cannot decode", Payload: []byte("\xffnot json"),
	})
	require.NoError(t, err)

	items, _ := dlqPage(t, s.get("/admin/dlq"))
	require.Len(t, items, 1)
	require.Nil(t, items[0].EventID)
	require.Equal(t, "\uFFFDnot json", items[0].Payload, "invalid UTF-8 is replaced in the listing")

	r := s.do(http.MethodPost, "/admin/dlq/replay", []byte(`{"all":true}`))

	require.Equal(t, http.StatusAccepted, r.status, "body: %s", r.body)
	require.JSONEq(t, `{"replayed":["`+letter.ID.String()+`"],"failed":[]}`, string(r.body))
	entries, err := s.redis.XRange(t.Context(), s.stream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, "\xffnot json", entries[0].Values["payload"], "republished byte for byte")
	require.NotEqual(t, letter.MessageUUID, entries[0].Values["uuid"], "under a new message uuid")
}

func TestAdminDLQReplay_NeitherOrBothIDsAndAllAnswers422(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	id := uuid.Must(uuid.NewV7()).String()

	for _, body := range []string{`{}`, `{"ids":[]}`, `{"all":false}`, `{"ids":["` + id + `"],"all":true}`} {
		p := requireProblem(t, s.do(http.MethodPost, "/admin/dlq/replay", []byte(body)), http.StatusUnprocessableEntity)
		require.Equal(t, "give either ids or all=true", p.Detail, body)
	}
	require.Zero(t, s.xlen())
}
