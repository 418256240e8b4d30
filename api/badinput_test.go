package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/daybook/daybook/transport"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
)

// Go's JSON decoder lets these through (it keeps or replaces them), while
// Postgres refuses them in text and jsonb (SQLSTATE 22P05, 22021, 22P02): a
// 202 for them meant an event dead-lettered after five attempts.
var unstorable = map[string]string{
	"NUL escape":          `"a\u0000b"`,
	"lone high surrogate": `"a\ud800b"`,
	"lone low surrogate":  `"\udc00"`,
	"raw bytes not UTF-8": "\"a\xff\xfeb\"",
	// jsonb refuses it with SQLSTATE 22003.
	"number beyond numeric": "1e999999999",
}

func TestIngest_UnstorableTextAnswers422NamingTheFieldAndQueuesNothing(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	for name, text := range unstorable {
		for where, body := range map[string]string{
			"body.payload.note":           `{"source":"c","type":"t","payload":{"note":` + text + `}}`,
			"body.payload.items[1]":       `{"source":"c","type":"t","payload":{"items":["ok",` + text + `]}}`,
			"body.order_id":               `{"source":"c","type":"t","order_id":` + text + `,"payload":{}}`,
			"body.event_id":               `{"event_id":` + text + `,"source":"c","type":"t","payload":{}}`,
			"body.events[0].payload.deep": "batch",
		} {
			path := "/events/ingest"
			if body == "batch" {
				path, body = "/events/ingest/batch", `{"events":[{"source":"c","type":"t","payload":{"deep":`+text+`}}]}`
			}
			p := requireProblem(t, s.do(http.MethodPost, path, []byte(body)), http.StatusUnprocessableEntity)
			require.Len(t, p.Errors, 1, "%s in %s", name, where)
			require.Equal(t, where, p.Errors[0].Location, name)
		}
	}
	// A key in the payload is checked like a value.
	p := requireProblem(t, s.ingest(`{"source":"c","type":"t","payload":{"k\u0000":1}}`), http.StatusUnprocessableEntity)
	require.True(t, strings.HasPrefix(p.Errors[0].Location, "body.payload.k"), p.Errors[0].Location)
	require.Zero(t, s.xlen())

	// Escapes that are fine stay fine: a surrogate pair, an escaped backslash.
	requireAccepted(t, s.ingest(`{"event_id":"fine","source":"c","type":"t","payload":{"e":"\ud83d\ude00","b":"\\u0000"}}`), "fine")
}

func TestIngest_IdempotencyKeyHeaderThatIsNotUTF8Answers422(t *testing.T) {
	t.Parallel()
	s := newServer(t)

	p := requireProblem(t, s.ingest(`{"source":"c","type":"t","payload":{}}`, "X-Idempotency-Key", "k\xff"), http.StatusUnprocessableEntity)
	require.Equal(t, "header.X-Idempotency-Key", p.Errors[0].Location)
	require.Zero(t, s.xlen())
}

func TestLedger_UnstorableTextAnswers422NeverA503(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	world := fields(t, s.do(http.MethodPost, "/accounts", []byte(`{"name":"world","allow_negative":true}`)))["id"].(string)
	alice := fields(t, s.do(http.MethodPost, "/accounts", []byte(`{"name":"alice"}`)))["id"].(string)

	for name, text := range unstorable {
		p := requireProblem(t, s.do(http.MethodPost, "/accounts", []byte(`{"name":`+text+`}`)), http.StatusUnprocessableEntity)
		require.Equal(t, "body.name", p.Errors[0].Location, name)

		body := `{"from_account_id":"` + world + `","to_account_id":"` + alice + `","amount":"1","idempotency_key":"t-1","metadata":{"note":` + text + `}}`
		p = requireProblem(t, s.do(http.MethodPost, "/transfers", []byte(body)), http.StatusUnprocessableEntity)
		require.Equal(t, "body.metadata.note", p.Errors[0].Location, name)
	}
	var accounts, transfers int
	require.NoError(t, s.pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM transfers)`).Scan(&accounts, &transfers))
	require.Equal(t, 2, accounts)
	require.Zero(t, transfers)
}

func TestGetEvent_DeadLetteredBeforeStoredIsFailedNotPending(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	id := requireAccepted(t, s.ingest(`{"event_id":"doomed","source":"c","type":"t","payload":{}}`), "doomed")
	require.Equal(t, "PENDING", fields(t, s.get("/events/"+id))["status"], "accepted, not yet stored")

	// The worker gave up on the message before any row was stored.
	payload := s.streamEvents()[0]
	body, err := payload.Encode()
	require.NoError(t, err)
	eventID := uuid.MustParse(id)
	letter, err := s.dead.Record(t.Context(), deadletter.Letter{
		MessageUUID: uuid.NewString(), EventID: &eventID, Topic: transport.EventsTopic,
		Reason: "attempt 5 failed: store refused it", Payload: body,
	})
	require.NoError(t, err)

	got := fields(t, s.get("/events/"+id))
	require.Equal(t, string(ingest.StatusFailed), got["status"])
	require.Equal(t, "doomed", got["idempotency_key"])
	require.Contains(t, got["last_error"], "attempt 5 failed: store refused it")

	// Replayed, it waits on the queue again.
	require.NoError(t, s.dead.MarkReplayed(t.Context(), letter.ID))
	require.Equal(t, string(ingest.StatusPending), fields(t, s.get("/events/"+id))["status"])
}
