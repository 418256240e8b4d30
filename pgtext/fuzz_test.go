package pgtext_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/pgtext"
)

// sqlstateOf is the code Postgres refuses a valid UTF-8 document with, by the
// reason CheckJSON gives; a document that is not UTF-8 is refused as it
// arrives (22021), before any of it is parsed.
var sqlstateOf = map[string]string{
	pgtext.ReasonNUL:       "22P05", // untranslatable_character
	pgtext.ReasonSurrogate: "22P02", // invalid_text_representation
	pgtext.ReasonUTF8:      "22021", // character_not_in_repertoire
	pgtext.ReasonNumber:    "22003", // numeric_value_out_of_range
}

// FuzzCheckJSON_AcceptedIsStorable stores every JSON object as an ingested
// event's payload, through the INSERT the worker uses, and checks that
// CheckJSON accepts exactly what Postgres stores, that a refusal has the
// SQLSTATE its reason predicts, and that what Postgres stores reads back as
// the value Go decodes.
func FuzzCheckJSON_AcceptedIsStorable(f *testing.F) {
	store := ingest.NewStore(testdb.New(f))
	f.Fuzz(func(t *testing.T, doc []byte) {
		if len(doc) == 0 || doc[0] != '{' || !json.Valid(doc) {
			return
		}
		problem := pgtext.CheckJSON(doc)
		id := uuid.New()
		outcome, rec, err := store.Claim(t.Context(), ingest.Event{
			ID: id, IdempotencyKey: id.String(), Source: "fuzz", Type: "fuzz.checked",
			Payload: doc, ReceivedAt: time.Now(),
		})
		if problem == nil {
			require.NoError(t, err, "CheckJSON accepted what Postgres refuses")
			require.Equal(t, ingest.Claimed, outcome)
			require.Equal(t, normal(t, doc), normal(t, rec.Payload), "Postgres stored another value")
			return
		}
		require.Contains(t, sqlstateOf, problem.Reason)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "CheckJSON refused (%v) what Postgres stores: err %v", problem, err)
		want := sqlstateOf[problem.Reason]
		if !utf8.Valid(doc) {
			want = sqlstateOf[pgtext.ReasonUTF8]
		}
		require.Equal(t, want, pgErr.Code, "CheckJSON: %v; Postgres: %s", problem, pgErr.Message)
	})
}

// FuzzCheckString_AcceptedIsStorable checks that CheckString accepts exactly
// the strings that Postgres stores as text, and that they read back unchanged.
func FuzzCheckString_AcceptedIsStorable(f *testing.F) {
	pool := testdb.New(f)
	f.Fuzz(func(t *testing.T, s string) {
		reason := pgtext.CheckString(s)
		var got string
		err := pool.QueryRow(t.Context(), `SELECT $1::text`, s).Scan(&got)
		if reason == "" {
			require.NoError(t, err, "CheckString accepted what Postgres refuses")
			require.Equal(t, s, got)
			return
		}
		require.Contains(t, []string{pgtext.ReasonNUL, pgtext.ReasonUTF8}, reason)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "CheckString refused (%s) what Postgres stores: err %v", reason, err)
		require.Equal(t, "22021", pgErr.Code, pgErr.Message) // NUL too: Postgres calls it an invalid byte
	})
}

// normal decodes a JSON document with every number in one form, so that a
// document and Postgres's rendering of it compare equal: jsonb keeps a
// number's value and scale but not its spelling (1E+2 reads back as 100).
func normal(t *testing.T, doc []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v))
	return normalNumbers(v)
}

func normalNumbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = normalNumbers(x)
		}
	case []any:
		for i, x := range v {
			v[i] = normalNumbers(x)
		}
	case json.Number:
		return normalNumber(string(v))
	}
	return v
}

// normalNumber writes a JSON number as sign, significant digits and the
// place of the point: "-12.50e1" and "-125" are both "-0.125e3". Zero of any
// sign is "0", as Postgres prints it.
func normalNumber(n string) string {
	sign := ""
	if strings.HasPrefix(n, "-") {
		sign, n = "-", n[1:]
	}
	mantissa, exp, _ := strings.Cut(strings.ToLower(n), "e")
	integer, fraction, _ := strings.Cut(mantissa, ".")
	digits := integer + fraction
	point := int64(len(integer))
	if exp != "" {
		// CheckJSON accepted it, so the exponent is below 2^30.
		e, err := strconv.ParseInt(exp, 10, 64)
		if err != nil {
			return "unparsable " + n
		}
		point += e
	}
	trimmed := strings.TrimLeft(digits, "0")
	point -= int64(len(digits) - len(trimmed))
	trimmed = strings.TrimRight(trimmed, "0")
	if trimmed == "" {
		return "0"
	}
	return sign + "0." + trimmed + "e" + strconv.FormatInt(point, 10)
}
