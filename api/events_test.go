package api_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/ingest"
)

// eventBody is the body of GET /events/{id} and of each listed event.
type eventBody struct {
	ID             string    `json:"id"`
	IdempotencyKey string    `json:"idempotency_key"`
	Source         string    `json:"source"`
	Type           string    `json:"type"`
	OrderID        string    `json:"order_id"`
	Status         string    `json:"status"`
	Attempts       int       `json:"attempts"`
	Replays        int       `json:"replays"`
	LastError      *string   `json:"last_error"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

func decodeEvent(t *testing.T, r reply) eventBody {
	t.Helper()
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var e eventBody
	require.NoError(t, jsonUnmarshalStrict(r.body, &e), "body: %s", r.body)
	return e
}

// bodyOf is what the API must answer for a stored record.
func bodyOf(rec ingest.Record) eventBody {
	out := eventBody{
		ID: rec.ID.String(), IdempotencyKey: rec.IdempotencyKey, Source: rec.Source, Type: rec.Type, OrderID: rec.OrderID,
		Status: string(rec.Status), Attempts: rec.Attempts, Replays: rec.Replays, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt,
	}
	if rec.LastError != "" {
		out.LastError = &rec.LastError
	}
	return out
}

// requireEventBody compares bodies, timestamps by instant.
func requireEventBody(t *testing.T, want, got eventBody) {
	t.Helper()
	require.True(t, want.CreatedAt.Equal(got.CreatedAt), "created_at: want %v, got %v", want.CreatedAt, got.CreatedAt)
	require.True(t, want.UpdatedAt.Equal(got.UpdatedAt), "updated_at: want %v, got %v", want.UpdatedAt, got.UpdatedAt)
	want.CreatedAt, want.UpdatedAt, got.CreatedAt, got.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	require.Equal(t, want, got)
}

func TestGetEvent_UnknownIDAnswers404(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	id := uuid.Must(uuid.NewV7()).String()

	p := requireProblem(t, s.get("/events/"+id), http.StatusNotFound)

	require.Equal(t, "no event with id "+id, p.Detail)
}

func TestGetEvent_NonUUIDAnswers422(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	p := requireProblem(t, s.get("/events/not-a-uuid"), http.StatusUnprocessableEntity)

	require.Equal(t, []string{"path.id"}, p.locations())
}

func TestGetEvent_AcceptedEventIsPendingBeforeTheWorkerStoresIt(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	before := time.Now()
	id := requireAccepted(t, s.ingest(`{"event_id":"p-1","source":"clicks","type":"click","order_id":"o-9","payload":{}}`), "p-1")

	r := s.get("/events/" + id)

	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	got := decodeEvent(t, r)
	require.WithinRange(t, got.CreatedAt, before.Add(-time.Second), time.Now().Add(time.Second))
	// The pending marker does not keep order_id: it is absent until the row exists.
	requireEventBody(t, eventBody{
		ID: id, IdempotencyKey: "p-1", Source: "clicks", Type: "click", Status: "PENDING",
		CreatedAt: got.CreatedAt, UpdatedAt: got.CreatedAt,
	}, got)
	require.Equal(t, map[string]any{
		"id": id, "idempotency_key": "p-1", "source": "clicks", "type": "click", "status": "PENDING",
		"attempts": 0.0, "replays": 0.0, "last_error": nil,
		"created_at": fields(t, r)["created_at"], "updated_at": fields(t, r)["created_at"],
	}, fields(t, r))
}

func TestGetEvent_StoredEventAnswersItsRecord(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	processing := s.storeEvent("stored-1")
	failed := s.storeEvent("stored-2")
	s.failEvent(failed, "payload.status missing")

	for _, id := range []uuid.UUID{processing.ID, failed.ID} {
		rec, err := s.events.Get(t.Context(), id)
		require.NoError(t, err)

		r := s.get("/events/" + id.String())

		require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
		requireEventBody(t, bodyOf(rec), decodeEvent(t, r))
	}
	lastError := "payload.status missing"
	got := decodeEvent(t, s.get("/events/"+failed.ID.String()))
	require.Equal(t, "FAILED", got.Status)
	require.Equal(t, 1, got.Attempts)
	require.Equal(t, &lastError, got.LastError)
	require.Equal(t, "o-1", got.OrderID)
}

func TestListEvents_PagesByCursorInArrivalOrder(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	var want []string
	for i := range 5 {
		want = append(want, s.storeEvent("list-"+string(rune('a'+i))).ID.String())
	}
	slices.Sort(want) // UUIDv7: arrival order

	var got []string
	cursor := ""
	for page := 0; ; page++ {
		require.Less(t, page, 3, "5 events in pages of 2 take 3 pages")
		path := "/events?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		items, next := listPage(t, s.get(path))
		for _, e := range items {
			got = append(got, e.ID)
		}
		if page < 2 {
			require.Len(t, items, 2)
			require.NotNil(t, next)
			require.Equal(t, items[1].ID, *next, "the cursor is the page's last id")
			cursor = *next
			continue
		}
		require.Len(t, items, 1)
		require.Nil(t, next, "the last page has next_cursor null")
		break
	}
	require.Equal(t, want, got)
}

func TestListEvents_FiltersByStatus(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	var failed, processing []string
	for i := range 5 {
		rec := s.storeEvent("filter-" + string(rune('a'+i)))
		if i%2 == 0 {
			s.failEvent(rec, "boom")
			failed = append(failed, rec.ID.String())
		} else {
			processing = append(processing, rec.ID.String())
		}
	}
	slices.Sort(failed)
	slices.Sort(processing)

	for status, want := range map[string][]string{"FAILED": failed, "PROCESSING": processing, "COMPLETED": {}} {
		items, next := listPage(t, s.get("/events?status="+status))
		ids := []string{}
		for _, e := range items {
			require.Equal(t, status, e.Status)
			ids = append(ids, e.ID)
		}
		require.Equal(t, want, ids, status)
		require.Nil(t, next)
	}

	items, next := listPage(t, s.get("/events?status=FAILED&limit=2"))
	require.Len(t, items, 2)
	require.NotNil(t, next)
	items, next = listPage(t, s.get("/events?status=FAILED&limit=2&cursor="+*next))
	require.Equal(t, failed[2], items[0].ID)
	require.Len(t, items, 1)
	require.Nil(t, next)
}

func TestListEvents_InvalidQueryAnswers422(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	for query, location := range map[string]string{
		"status=DONE": "query.status",
		"limit=0":     "query.limit",
		"limit=501":   "query.limit",
	} {
		p := requireProblem(t, s.get("/events?"+query), http.StatusUnprocessableEntity)
		require.Equal(t, []string{location}, p.locations(), query)
	}
	for _, cursor := range []string{"not-a-cursor", "{01a22516-0000-7000-8000-000000000001}", "01a225160000700080000000000000001"} {
		p := requireProblem(t, s.get("/events?cursor="+cursor), http.StatusUnprocessableEntity)
		require.Equal(t, []string{"query.cursor"}, p.locations(), cursor)
	}
}

func listPage(t *testing.T, r reply) ([]eventBody, *string) {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	require.Contains(t, fields(t, r), "next_cursor", "next_cursor is always present")
	var body struct {
		Items      []eventBody `json:"items"`
		NextCursor *string     `json:"next_cursor"`
	}
	require.NoError(t, jsonUnmarshalStrict(r.body, &body), "body: %s", r.body)
	require.NotNil(t, body.Items, "items is a list, never null")
	return body.Items, body.NextCursor
}
