package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/api"
)

func TestIngest_NewEventAnswers202PendingAndPutsOneEntryOnStream(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	r := s.ingest(`{"event_id":"evt-1","source":"order_updates","type":"order.updated","order_id":"o-1",` +
		`"payload":{"status":"paid", "amount":12.30},"occurred_at":"2026-01-02T03:04:05Z"}`)

	id := requireAccepted(t, r, "evt-1")
	require.Equal(t, map[string]any{"id": id, "idempotency_key": "evt-1", "status": "PENDING", "duplicate": false}, fields(t, r))
	require.EqualValues(t, 1, s.xlen())
	held, ok := s.idem("evt-1")
	require.True(t, ok)
	require.Equal(t, id, held)

	events := s.streamEvents()
	require.Len(t, events, 1)
	ev := events[0]
	require.Equal(t, id, ev.ID.String())
	require.Equal(t, "evt-1", ev.IdempotencyKey)
	require.Equal(t, "order_updates", ev.Source)
	require.Equal(t, "order.updated", ev.Type)
	require.Equal(t, "o-1", ev.OrderID)
	require.Equal(t, `{"status":"paid","amount":12.30}`, string(ev.Payload), "compacted, numbers as written")
	require.NotNil(t, ev.OccurredAt)
	require.True(t, ev.OccurredAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	require.WithinDuration(t, time.Now(), ev.ReceivedAt, time.Minute)
	require.Equal(t, r.header.Get("X-Correlation-ID"), ev.CorrelationID)
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.EventsIngested.WithLabelValues("accepted")))
}

func TestIngest_IdempotencyKeyIsHeaderElseEventIDElseBodyHash(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	withEventID := `{"event_id":"evt-7","source":"clicks","type":"click","payload":{"x":1}}`

	byHeader := requireAccepted(t, s.ingest(withEventID, "X-Idempotency-Key", "hdr-7"), "hdr-7")
	byEventID := requireAccepted(t, s.ingest(withEventID), "evt-7")
	hashKey := bodyHashKey(`{"payload":{"x":1},"source":"clicks","type":"click"}`)
	byHash := requireAccepted(t, s.ingest(`{"source":"clicks","type":"click","payload":{"x":1}}`), hashKey)

	require.EqualValues(t, 3, s.xlen())
	for key, id := range map[string]string{"hdr-7": byHeader, "evt-7": byEventID, hashKey: byHash} {
		held, ok := s.idem(key)
		require.True(t, ok, key)
		require.Equal(t, id, held, key)
	}
	require.Len(t, map[string]bool{byHeader: true, byEventID: true, byHash: true}, 3, "three different events")
}

func TestIngest_SameBodyInAnotherKeyOrderAndSpacingIsDuplicate(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	key := bodyHashKey(`{"payload":{"a":"z","b":[1,2.50]},"source":"clicks","type":"click"}`)

	id := requireAccepted(t, s.ingest(`{"source":"clicks","type":"click","payload":{"b":[1,2.50],"a":"z"}}`), key)
	requireDuplicate(t, s.ingest("{ \"payload\" : {\"a\":\"z\",\n \"b\":[ 1, 2.50 ]},\n\t\"type\":\"click\",  \"source\":\"clicks\" }\n"),
		id, key, "PENDING")
	require.EqualValues(t, 1, s.xlen())

	// Numbers keep their text: 2.5 is another body than 2.50.
	requireAccepted(t, s.ingest(`{"source":"clicks","type":"click","payload":{"b":[1,2.5],"a":"z"}}`),
		bodyHashKey(`{"payload":{"a":"z","b":[1,2.5]},"source":"clicks","type":"click"}`))
	require.EqualValues(t, 2, s.xlen())
}

func TestIngest_DuplicateKeyAnswers200WithOriginalID(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	id := requireAccepted(t, s.ingest(`{"source":"clicks","type":"click","payload":{"x":1}}`, "X-Idempotency-Key", "k-1"), "k-1")
	// Another body under the same key is still the same event.
	r := s.ingest(`{"source":"clicks","type":"click","payload":{"x":2}}`, "X-Idempotency-Key", "k-1")

	requireDuplicate(t, r, id, "k-1", "PENDING")
	require.Equal(t, map[string]any{"id": id, "idempotency_key": "k-1", "status": "PENDING", "duplicate": true}, fields(t, r))
	require.EqualValues(t, 1, s.xlen())
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.EventsIngested.WithLabelValues("duplicate")))
}

func TestIngest_DuplicateReportsStatusOfStoredEvent(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	body := `{"source":"clicks","type":"click","payload":{"x":1}}`
	id := requireAccepted(t, s.ingest(body, "X-Idempotency-Key", "k-2"), "k-2")

	// The worker has stored and claimed it.
	s.storeEventWithID(uuid.MustParse(id), "k-2")

	requireDuplicate(t, s.ingest(body, "X-Idempotency-Key", "k-2"), id, "k-2", "PROCESSING")
	require.EqualValues(t, 1, s.xlen())
}

func TestIngest_MalformedJSONAnswers400(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	for name, body := range map[string]string{
		"truncated":      `{"source":"clicks","type":"click","payload":{`,
		"not json":       `source=clicks`,
		"trailing bytes": `{"source":"clicks","type":"click","payload":{}} {}`,
		"empty":          ``,
	} {
		r := s.ingest(body)
		requireProblem(t, r, http.StatusBadRequest)
		require.Empty(t, r.header.Get("Retry-After"), name)
	}
	require.Zero(t, s.xlen())
}

func TestIngest_SchemaViolationsAnswer422NamingEachField(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	longOrderID := strings.Repeat("o", 101)
	const (
		badPattern = "body.source: expected string to match pattern ^[a-z0-9][a-z0-9_.-]*$"
		notObject  = "body.payload: expected object"
		tooLong    = "body.order_id: expected length <= 100"
		unknown    = "body.colour: unexpected property"
	)

	for _, tc := range []struct {
		name string
		body string
		want []string // location: message
	}{
		// huma names a missing property in the message, at the enclosing object's location.
		{"missing source", `{"type":"click","payload":{}}`, []string{"body: expected required property source to be present"}},
		{"bad source", `{"source":"Bad Source!","type":"click","payload":{}}`, []string{badPattern}},
		{"payload not object", `{"source":"clicks","type":"click","payload":"x"}`, []string{notObject}},
		{"unknown property", `{"source":"clicks","type":"click","payload":{},"colour":"red"}`, []string{unknown}},
		{"order_id too long", `{"source":"clicks","type":"click","order_id":"` + longOrderID + `","payload":{}}`, []string{tooLong}},
		{"all at once", `{"source":"Bad","order_id":"` + longOrderID + `","payload":[],"colour":1}`,
			[]string{"body: expected required property type to be present", badPattern, notObject, tooLong, unknown}},
	} {
		r := s.ingest(tc.body)
		p := requireProblem(t, r, http.StatusUnprocessableEntity)
		require.Equal(t, "validation failed", p.Detail, tc.name)
		require.ElementsMatch(t, tc.want, p.failures(), "%s: %s", tc.name, r.body)
	}
	require.Zero(t, s.xlen())
}

func TestIngest_MultiByteValuesOverByteLimitsAnswer422(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	// Within maxLength in characters, over the worker's limits in bytes: the
	// worker could never decode them, so they must not be accepted.
	e100, e128 := strings.Repeat("é", 100), strings.Repeat("é", 128) // 200 and 256 bytes

	for _, tc := range []struct {
		name   string
		body   string
		header []string
		want   []string
	}{
		{"type", `{"source":"c","type":"` + e100 + `","payload":{}}`, nil,
			[]string{"body.type: expected at most 100 bytes of UTF-8"}},
		{"order_id", `{"source":"c","type":"t","order_id":"` + e100 + `","payload":{}}`, nil,
			[]string{"body.order_id: expected at most 100 bytes of UTF-8"}},
		{"event_id as key", `{"event_id":"` + e128 + `","source":"c","type":"t","payload":{}}`, nil,
			[]string{"body.event_id: expected at most 255 bytes of UTF-8"}},
		{"header key", `{"source":"c","type":"t","payload":{}}`, []string{"X-Idempotency-Key", e128},
			[]string{"header.X-Idempotency-Key: expected at most 255 bytes of UTF-8"}},
	} {
		r := s.ingest(tc.body, tc.header...)
		p := requireProblem(t, r, http.StatusUnprocessableEntity)
		require.Empty(t, r.header.Get("Retry-After"), "a client error, not one to retry")
		require.Equal(t, tc.want, p.failures(), tc.name)
	}

	batch := `{"events":[{"source":"c","type":"t","payload":{}},{"event_id":"` + e128 + `","source":"c","type":"` + e100 + `","payload":{}}]}`
	p := requireProblem(t, s.do(http.MethodPost, "/events/ingest/batch", []byte(batch)), http.StatusUnprocessableEntity)
	require.Equal(t, []string{
		"body.events[1].event_id: expected at most 255 bytes of UTF-8",
		"body.events[1].type: expected at most 100 bytes of UTF-8",
	}, p.failures())
	require.Zero(t, s.xlen())

	// At the limits, in bytes, they are accepted.
	e50 := strings.Repeat("é", 50)
	requireAccepted(t, s.ingest(`{"source":"c","type":"`+e50+`","order_id":"`+e50+`","payload":{}}`, "X-Idempotency-Key", strings.Repeat("k", 255)),
		strings.Repeat("k", 255))
	ev := s.streamEvents()[0]
	require.Equal(t, e50, ev.Type)
	require.Equal(t, e50, ev.OrderID)
}

func TestIngest_BodyOver256KiBAnswers413(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string][]serverOption{
		"unsigned": nil,
		"signed":   {withWebhookSecret(t, testSecret, time.Now)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, opts...)
			post := func(body []byte) reply {
				return s.do(http.MethodPost, "/events/ingest", body, signed(testSecret, uuid.NewString(), time.Now(), body)...)
			}

			requireProblem(t, post(eventOfSize(t, api.EventBodyBytesMax+1)), http.StatusRequestEntityTooLarge)
			requireProblem(t, post(eventOfSize(t, 2*api.EventBodyBytesMax)), http.StatusRequestEntityTooLarge)
			require.Zero(t, s.xlen())

			// At most 256 KiB: exactly the limit is accepted.
			r := post(eventOfSize(t, api.EventBodyBytesMax))
			require.Equal(t, http.StatusAccepted, r.status, "body: %.300s", r.body)
			require.EqualValues(t, 1, s.xlen())
		})
	}
}

func TestIngest_OverRateAnswers429WithRetryAfter(t *testing.T) {
	t.Parallel()
	s := newServer(t, withRate(2))

	requireAccepted(t, s.ingest(`{"event_id":"r-1","source":"clicks","type":"click","payload":{}}`), "r-1")
	requireAccepted(t, s.ingest(`{"event_id":"r-2","source":"clicks","type":"click","payload":{}}`), "r-2")
	r := s.ingest(`{"event_id":"r-3","source":"clicks","type":"click","payload":{}}`)

	requireProblem(t, r, http.StatusTooManyRequests)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.EqualValues(t, 2, s.xlen())
	_, held := s.idem("r-3")
	require.False(t, held, "a rate-limited event leaves no idempotency key")
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.EventsIngested.WithLabelValues("rate_limited")))
}

func TestIngest_QueueRefusalAnswers503AndReleasesKey(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	ctx := context.Background()
	// A plain string where the stream should be: XADD fails with WRONGTYPE.
	require.NoError(t, s.redis.Set(ctx, s.stream, "not a stream", 0).Err())
	body := `{"event_id":"q-1","source":"clicks","type":"click","payload":{"x":1}}`

	r := s.ingest(body)

	requireProblem(t, r, http.StatusServiceUnavailable)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	_, held := s.idem("q-1")
	require.False(t, held, "nothing was accepted, so the key is free")
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.EventsIngested.WithLabelValues("unavailable")))

	require.NoError(t, s.redis.Del(ctx, s.stream).Err())
	id := requireAccepted(t, s.ingest(body), "q-1")
	require.EqualValues(t, 1, s.xlen())
	held2, ok := s.idem("q-1")
	require.True(t, ok)
	require.Equal(t, id, held2)
}

func TestIngest_ConcurrentRequestsWithOneKeyAcceptExactlyOne(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	const n = 100

	replies := make([]reply, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			replies[i] = s.ingest(fmt.Sprintf(`{"source":"clicks","type":"click","payload":{"n":%d}}`, i), "X-Idempotency-Key", "same-key")
		})
	}
	close(start)
	wg.Wait()

	statuses := map[int]int{}
	ids := map[string]int{}
	for _, r := range replies {
		statuses[r.status]++
		res := decodeResult(t, r)
		ids[res.ID]++
		require.Equal(t, "same-key", res.IdempotencyKey)
		require.Equal(t, "PENDING", res.Status)
		require.Equal(t, r.status == http.StatusOK, res.Duplicate)
	}
	require.Equal(t, map[int]int{http.StatusAccepted: 1, http.StatusOK: n - 1}, statuses)
	require.Len(t, ids, 1, "every answer names the one event")
	require.EqualValues(t, 1, s.xlen())
	held, ok := s.idem("same-key")
	require.True(t, ok)
	require.Contains(t, ids, held)
}

func TestIngestBatch_AnswersOneResultPerEventInOrder(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	batch := []byte(`{"events":[` +
		`{"event_id":"b-1","source":"clicks","type":"click","payload":{"x":1}},` +
		`{"source":"clicks","type":"click","payload":{"x":2}},` +
		`{"event_id":"b-1","source":"clicks","type":"click","payload":{"x":3}}]}`)
	hashKey := bodyHashKey(`{"payload":{"x":2},"source":"clicks","type":"click"}`)

	// X-Idempotency-Key names one event; a batch ignores it.
	r := s.do(http.MethodPost, "/events/ingest/batch", batch, "X-Idempotency-Key", "ignored")

	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	items := batchItems(t, r)
	require.Len(t, items, 3)
	require.Equal(t, ingestResult{ID: items[0].ID, IdempotencyKey: "b-1", Status: "PENDING"}, items[0])
	require.Equal(t, ingestResult{ID: items[1].ID, IdempotencyKey: hashKey, Status: "PENDING"}, items[1])
	require.Equal(t, ingestResult{ID: items[0].ID, IdempotencyKey: "b-1", Status: "PENDING", Duplicate: true}, items[2],
		"the third repeats the first's key")
	require.NotEqual(t, items[0].ID, items[1].ID)
	require.EqualValues(t, 2, s.xlen())
	_, held := s.idem("ignored")
	require.False(t, held)

	events := s.streamEvents()
	require.Equal(t, items[0].ID, events[0].ID.String())
	require.Equal(t, items[1].ID, events[1].ID.String())

	// The same batch again: every item is a duplicate of its original.
	again := batchItems(t, s.do(http.MethodPost, "/events/ingest/batch", batch))
	require.Equal(t, []ingestResult{
		{ID: items[0].ID, IdempotencyKey: "b-1", Status: "PENDING", Duplicate: true},
		{ID: items[1].ID, IdempotencyKey: hashKey, Status: "PENDING", Duplicate: true},
		{ID: items[0].ID, IdempotencyKey: "b-1", Status: "PENDING", Duplicate: true},
	}, again)
	require.EqualValues(t, 2, s.xlen())
}

func TestIngestBatch_MoreThan1000EventsAnswers422(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	item := `{"source":"clicks","type":"click","payload":{}}`
	batch := `{"events":[` + strings.TrimSuffix(strings.Repeat(item+",", 1001), ",") + `]}`

	p := requireProblem(t, s.do(http.MethodPost, "/events/ingest/batch", []byte(batch)), http.StatusUnprocessableEntity)

	require.Equal(t, []string{"body.events: expected array length <= 1000"}, p.failures())
	require.Zero(t, s.xlen())

	p = requireProblem(t, s.do(http.MethodPost, "/events/ingest/batch", []byte(`{"events":[]}`)), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"body.events: expected array length >= 1"}, p.failures())
}

func TestIngestBatch_InvalidItemFailsWholeBatchNamingIt(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	batch := `{"events":[` +
		`{"event_id":"ok-1","source":"clicks","type":"click","payload":{}},` +
		`{"event_id":"bad-1","source":"Not Valid","type":"click","payload":"x"}]}`

	p := requireProblem(t, s.do(http.MethodPost, "/events/ingest/batch", []byte(batch)), http.StatusUnprocessableEntity)

	require.ElementsMatch(t, []string{
		"body.events[1].source: expected string to match pattern ^[a-z0-9][a-z0-9_.-]*$",
		"body.events[1].payload: expected object",
	}, p.failures())
	require.Zero(t, s.xlen())
	_, held := s.idem("ok-1")
	require.False(t, held, "the valid item was not admitted either")
}

func TestIngestBatch_CountsEveryEventAgainstRateLimit(t *testing.T) {
	t.Parallel()
	s := newServer(t, withRate(2))
	two := `{"events":[{"event_id":"a","source":"c","type":"t","payload":{}},{"event_id":"b","source":"c","type":"t","payload":{}}]}`
	three := `{"events":[{"event_id":"x","source":"c","type":"t","payload":{}},{"event_id":"y","source":"c","type":"t","payload":{}},` +
		`{"event_id":"z","source":"c","type":"t","payload":{}}]}`

	// More events than the burst can ever hold: no Retry-After could be true.
	requireProblem(t, s.do(http.MethodPost, "/events/ingest/batch", []byte(three)), http.StatusUnprocessableEntity)

	require.Equal(t, http.StatusOK, s.do(http.MethodPost, "/events/ingest/batch", []byte(two)).status)
	r := s.ingest(`{"event_id":"c","source":"c","type":"t","payload":{}}`)
	requireProblem(t, r, http.StatusTooManyRequests)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.EqualValues(t, 2, s.xlen())
}

func TestIngestBatch_QueueRefusalAnswers503AndKeepsNothing(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	ctx := context.Background()
	require.NoError(t, s.redis.Set(ctx, s.stream, "not a stream", 0).Err())
	batch := []byte(`{"events":[{"event_id":"q-1","source":"c","type":"t","payload":{}},{"event_id":"q-2","source":"c","type":"t","payload":{}}]}`)

	r := s.do(http.MethodPost, "/events/ingest/batch", batch)

	requireProblem(t, r, http.StatusServiceUnavailable)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	for _, key := range []string{"q-1", "q-2"} {
		_, held := s.idem(key)
		require.False(t, held, key)
	}

	require.NoError(t, s.redis.Del(ctx, s.stream).Err())
	items := batchItems(t, s.do(http.MethodPost, "/events/ingest/batch", batch))
	require.Len(t, items, 2)
	require.False(t, items[0].Duplicate)
	require.False(t, items[1].Duplicate)
	require.EqualValues(t, 2, s.xlen())
}

func batchItems(t *testing.T, r reply) []ingestResult {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	var body struct {
		Items []ingestResult `json:"items"`
	}
	require.NoError(t, jsonUnmarshalStrict(r.body, &body), "body: %s", r.body)
	return body.Items
}
