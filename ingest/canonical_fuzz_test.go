package ingest_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/ingest"
)

// FuzzCanonical_SameValueSameKey checks that Canonical never panics and, for
// every document it accepts, that it is idempotent, compact, keeps the value
// and every number's exact text, and gives the same bytes (hence the same
// default idempotency key) for the same value written with its keys in
// another order and other white space.
func FuzzCanonical_SameValueSameKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, doc []byte) {
		canonical, err := ingest.Canonical(doc)
		if err != nil {
			require.Nil(t, canonical)
			return
		}

		again, err := ingest.Canonical(canonical)
		require.NoError(t, err)
		require.Equal(t, string(canonical), string(again), "not idempotent")

		var compact bytes.Buffer
		require.NoError(t, json.Compact(&compact, canonical))
		require.Equal(t, string(canonical), compact.String(), "insignificant white space left")

		// Numbers decode to json.Number, their text as written: equal values
		// mean every number kept its exact text.
		value := decode(t, doc)
		require.Equal(t, value, decode(t, canonical), "value or number text changed")

		var reordered bytes.Buffer
		writeReversed(t, &reordered, value)
		var indented bytes.Buffer
		require.NoError(t, json.Indent(&indented, reordered.Bytes(), "\t", "  "))
		other, err := ingest.Canonical(indented.Bytes())
		require.NoError(t, err, "%s", indented.Bytes())
		require.Equal(t, string(canonical), string(other), "key order or white space changed the canonical form")
		key, err := ingest.IdempotencyKey("", "", doc)
		require.NoError(t, err)
		otherKey, err := ingest.IdempotencyKey("", "", indented.Bytes())
		require.NoError(t, err)
		require.Equal(t, key, otherKey)
	})
}

func decode(t *testing.T, doc []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v))
	return v
}

// writeReversed encodes v with every object's keys in reverse sorted order,
// blanks around every token, and strings escaped as json.Marshal does (<, >
// and & as \u003c...), unlike Canonical.
func writeReversed(t *testing.T, buf *bytes.Buffer, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		keys := slices.Sorted(maps.Keys(v))
		slices.Reverse(keys)
		buf.WriteString("{ ")
		for i, k := range keys {
			if i > 0 {
				buf.WriteString(" , ")
			}
			writeMarshaled(t, buf, k)
			buf.WriteString(" :\r\n")
			writeReversed(t, buf, v[k])
		}
		buf.WriteString(" }")
	case []any:
		buf.WriteString("[ ")
		for i, x := range v {
			if i > 0 {
				buf.WriteString(" ,\t")
			}
			writeReversed(t, buf, x)
		}
		buf.WriteString(" ]")
	default: // string, json.Number, bool, nil
		writeMarshaled(t, buf, v)
	}
}

func writeMarshaled(t *testing.T, buf *bytes.Buffer, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	buf.Write(b)
}
