package ingest_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/ingest"
)

const validBody = `{"id":"0190d7a4-7a1e-7c3b-9f1e-2b3c4d5e6f70","idempotency_key":"evt-1","source":"order_updates",` +
	`"type":"order.updated","order_id":"o-1","payload":{"status":"paid"},"occurred_at":"2026-03-01T10:00:00Z",` +
	`"received_at":"2026-03-01T10:00:01Z","correlation_id":"c-1"}`

func TestDecode_ReadsAWholeEvent(t *testing.T) {
	t.Parallel()
	e, err := ingest.Decode([]byte(validBody))
	require.NoError(t, err)

	occurred := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	require.Equal(t, ingest.Event{
		ID:             uuid.MustParse("0190d7a4-7a1e-7c3b-9f1e-2b3c4d5e6f70"),
		IdempotencyKey: "evt-1",
		Source:         "order_updates",
		Type:           "order.updated",
		OrderID:        "o-1",
		Payload:        json.RawMessage(`{"status":"paid"}`),
		OccurredAt:     &occurred,
		ReceivedAt:     time.Date(2026, 3, 1, 10, 0, 1, 0, time.UTC),
		CorrelationID:  "c-1",
	}, e)
}

func TestEncode_RoundTripsThroughDecode(t *testing.T) {
	t.Parallel()
	e := newEvent(t, "clicks", `{"x":1,"nested":{"y":[1,2]}}`)
	e.CorrelationID = "corr"
	body, err := e.Encode()
	require.NoError(t, err)

	back, err := ingest.Decode(body)
	require.NoError(t, err)
	require.Equal(t, e, back)
}

func TestDecode_RejectsBodiesThatAreNotAWholeEvent(t *testing.T) {
	t.Parallel()
	replace := func(old, new string) string {
		require.Contains(t, validBody, old)
		return strings.Replace(validBody, old, new, 1)
	}
	for name, tc := range map[string]struct {
		body string
		want string
	}{
		"unknown field":         {replace(`"source"`, `"extra":1,"source"`), `unknown field "extra"`},
		"missing id":            {replace(`"id":"0190d7a4-7a1e-7c3b-9f1e-2b3c4d5e6f70",`, ``), "id is missing"},
		"nil id":                {replace(`0190d7a4-7a1e-7c3b-9f1e-2b3c4d5e6f70`, `00000000-0000-0000-0000-000000000000`), "id is missing"},
		"payload an array":      {replace(`{"status":"paid"}`, `[1,2]`), "payload must be a JSON object"},
		"payload a string":      {replace(`{"status":"paid"}`, `"paid"`), "payload must be a JSON object"},
		"payload null":          {replace(`{"status":"paid"}`, `null`), "payload must be a JSON object"},
		"payload missing":       {replace(`"payload":{"status":"paid"},`, ``), "payload must be a JSON object"},
		"empty key":             {replace(`"evt-1"`, `""`), "idempotency_key must have 1 to 255 bytes"},
		"key too long":          {replace(`"evt-1"`, `"`+strings.Repeat("k", 256)+`"`), "idempotency_key must have 1 to 255 bytes"},
		"empty source":          {replace(`"order_updates"`, `""`), "source must have 1 to 100 bytes"},
		"type too long":         {replace(`"order.updated"`, `"`+strings.Repeat("t", 101)+`"`), "type must have 1 to 100 bytes"},
		"order id too long":     {replace(`"o-1"`, `"`+strings.Repeat("o", 101)+`"`), "order_id must have at most 100 bytes"},
		"missing received_at":   {replace(`,"received_at":"2026-03-01T10:00:01Z"`, ``), "received_at is missing"},
		"not JSON":              {`{"id":`, "decode event"},
		"a JSON array":          {`[]`, "decode event"},
		"trailing second event": {validBody + validBody, "decode event"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ingest.Decode([]byte(tc.body))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestDecode_NamesEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := ingest.Decode([]byte(`{"payload":[]}`))
	require.EqualError(t, err, "decode event: id is missing\n"+
		"idempotency_key must have 1 to 255 bytes\n"+
		"source must have 1 to 100 bytes\n"+
		"type must have 1 to 100 bytes\n"+
		"payload must be a JSON object\n"+
		"received_at is missing")
}

func TestCanonical_SortsKeysDropsSpaceAndKeepsNumbersAsWritten(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ in, want string }{
		"sorted keys at every depth": {`{"b":1,"a":{"d":true,"c":null}}`, `{"a":{"c":null,"d":true},"b":1}`},
		"white space dropped":        {" {\n\t\"b\" : [ 1 , 2 ] ,\r\n \"a\" : \"x y\" } ", `{"a":"x y","b":[1,2]}`},
		"trailing zero kept":         {`{"amount":1.10}`, `{"amount":1.10}`},
		"big integer kept":           {`{"n":12345678901234567890}`, `{"n":12345678901234567890}`},
		"exponent kept":              {`{"n":1e3,"m":-0.0,"k":2E-7}`, `{"k":2E-7,"m":-0.0,"n":1e3}`},
		"array order kept":           {`[3,1,2]`, `[3,1,2]`},
		"unicode kept":               {`{"é":"ü"}`, `{"é":"ü"}`},
		"html characters kept":       {`{"a":"<b> & </b>"}`, `{"a":"<b> & </b>"}`},
		"a scalar":                   {`"x"`, `"x"`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := ingest.Canonical([]byte(tc.in))
			require.NoError(t, err)
			require.Equal(t, tc.want, string(got))
		})
	}
}

func TestCanonical_GivesOneFormToEquivalentDocuments(t *testing.T) {
	t.Parallel()
	a, err := ingest.Canonical([]byte(`{"source":"s","payload":{"x":1,"y":[1.50]},"type":"t"}`))
	require.NoError(t, err)
	b, err := ingest.Canonical([]byte(`{ "type":"t", "payload":{ "y":[1.50], "x":1 }, "source":"s" }`))
	require.NoError(t, err)
	require.Equal(t, string(a), string(b))

	c, err := ingest.Canonical([]byte(`{"source":"s","payload":{"x":1,"y":[1.5]},"type":"t"}`))
	require.NoError(t, err)
	require.NotEqual(t, string(a), string(c), "1.50 and 1.5 are written differently, so they are different bodies")
}

func TestCanonical_RejectsWhatIsNotOneJSONDocument(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `{`, `{"a":}`, `{"a":1}{"b":2}`, `{"a":1} x`} {
		_, err := ingest.Canonical([]byte(in))
		require.Error(t, err, "%q", in)
	}
}

func TestIdempotencyKey_PrefersHeaderThenEventIDThenBodyHash(t *testing.T) {
	t.Parallel()
	key := func(header, eventID string, body []byte) string {
		t.Helper()
		k, err := ingest.IdempotencyKey(header, eventID, body)
		require.NoError(t, err)
		return k
	}
	body := []byte(`{}`)
	require.Equal(t, "from-header", key("from-header", "evt-1", body))
	require.Equal(t, "evt-1", key("", "evt-1", body))
	// SHA-256 of the two bytes "{}".
	require.Equal(t, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
		key("", "", body))

	// Hashed in canonical form: key order and white space do not matter.
	require.Equal(t, "sha256:d9763d41789c9e316b4a667b91096c66f9b11ba877856f03373af48ce29936d9",
		key("", "", []byte(`{ "b":[1.10,2], "a":1 }`)))

	// A header or an event_id spares the body's decoding: it is never read.
	require.Equal(t, "evt-1", key("", "evt-1", []byte(`not json`)))
	_, err := ingest.IdempotencyKey("", "", []byte(`not json`))
	require.Error(t, err)
}
