package pgtext_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/pgtext"
)

func TestCheckJSON_NamesTheFirstUnstorableFieldAndWhy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc, path, reason string
	}{
		{"NUL escape in a top-level value", `{"name":"a\u0000b"}`, "name", pgtext.ReasonNUL},
		{"NUL escape deep in arrays", `{"payload":{"items":[{},{},{},{"name":"x\u0000"}]}}`, "payload.items[3].name", pgtext.ReasonNUL},
		{"NUL escape after an escaped backslash", `{"s":"\\\u0000"}`, "s", pgtext.ReasonNUL},
		{"lone high surrogate", `{"s":"\ud800"}`, "s", pgtext.ReasonSurrogate},
		{"lone high surrogate in capitals", `{"s":"\uD83D"}`, "s", pgtext.ReasonSurrogate},
		{"lone low surrogate", `{"s":"a\udc00b"}`, "s", pgtext.ReasonSurrogate},
		{"high surrogate then a letter escape", `{"s":"\ud800\u0041"}`, "s", pgtext.ReasonSurrogate},
		{"high surrogate then another high", `{"s":"\ud800\ud800"}`, "s", pgtext.ReasonSurrogate},
		{"high surrogate then a raw low one's text", `{"s":"\ud83dude00"}`, "s", pgtext.ReasonSurrogate},
		{"high surrogate then another escape", `{"s":"\ud83d\n\ude00"}`, "s", pgtext.ReasonSurrogate},
		{"pair in the wrong order", `{"s":"\ude00\ud83d"}`, "s", pgtext.ReasonSurrogate},
		{"invalid byte", "{\"s\":\"a\xffb\"}", "s", pgtext.ReasonUTF8},
		{"truncated sequence", "{\"s\":\"\xe2\x82\"}", "s", pgtext.ReasonUTF8},
		{"overlong NUL", "{\"s\":\"\xc0\x80\"}", "s", pgtext.ReasonUTF8},
		{"UTF-8 encoded surrogate", "{\"s\":\"\xed\xa0\x80\"}", "s", pgtext.ReasonUTF8},
		{"beyond U+10FFFF", "{\"s\":\"\xf4\x90\x80\x80\"}", "s", pgtext.ReasonUTF8},
		{"bad key names its member", `{"a":{"b\u0000c":1}}`, "a.b\uFFFDc", pgtext.ReasonNUL},
		{"bad key with a lone surrogate", `{"ok":true,"\udfff":null}`, "\uFFFD", pgtext.ReasonSurrogate},
		{"bad key with invalid UTF-8", "{\"k\xff\":[]}", "k\uFFFD", pgtext.ReasonUTF8},
		{"escaped key is printed decoded", `{"caf\u00e9":{"x":"\u0000"}}`, "café.x", pgtext.ReasonNUL},
		{"keys with dots print as they are", `{"a.b":{"c":"\u0000"}}`, "a.b.c", pgtext.ReasonNUL},
		{"member after a closed array", `{"a":[1,"x"],"b":"\u0000"}`, "b", pgtext.ReasonNUL},
		{"member after a closed object", `{"a":{"x":1},"b":["ok","\u0000"]}`, "b[1]", pgtext.ReasonNUL},
		{"top-level array", `["ok",["x","\u0000"]]`, "[1][1]", pgtext.ReasonNUL},
		{"object in a top-level array", `[{"a":1},{"b":"\ud800"}]`, "[1].b", pgtext.ReasonSurrogate},
		{"top-level string", `"\u0000"`, "", pgtext.ReasonNUL},
		{"first problem in document order", "{\"a\":\"\xff\",\"b\":\"\\u0000\"}", "a", pgtext.ReasonUTF8},
		{"first problem within a string", "{\"a\":\"\\u0000\xff\"}", "a", pgtext.ReasonNUL},
		{"number too large", `{"n":1e131072}`, "n", pgtext.ReasonNumber},
		{"number too many digits", `{"n":1` + strings.Repeat("0", 131072) + `}`, "n", pgtext.ReasonNumber},
		{"number too precise", `{"n":[0,1e-16384]}`, "n[1]", pgtext.ReasonNumber},
		{"number too precise as written", `{"n":1.` + strings.Repeat("0", 16384) + `}`, "n", pgtext.ReasonNumber},
		{"zero with a huge exponent", `{"n":0e1073741823}`, "n", pgtext.ReasonNumber},
		{"exponent beyond int64", `{"n":-0.5E+99999999999999999999999}`, "n", pgtext.ReasonNumber},
		{"not JSON", `{"a":}`, "", pgtext.ReasonMalformed},
		{"empty", ``, "", pgtext.ReasonMalformed},
		{"raw NUL byte in a string", "{\"a\":\"\x00\"}", "", pgtext.ReasonMalformed},
		{"two documents", `{}{}`, "", pgtext.ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := pgtext.CheckJSON([]byte(tt.doc))
			require.Equal(t, &pgtext.Problem{Path: tt.path, Reason: tt.reason}, got)
		})
	}
}

func TestCheckJSON_AcceptsEverythingPostgresStores(t *testing.T) {
	t.Parallel()
	docs := []string{
		`{}`, `[]`, `"x"`, `1`, `null`, ` {"a" : [ true , false , null ] } `,
		`{"e":"\ud83d\ude00"}`,
		`{"e":"\uD83D\uDE00 and \uDBFF\uDFFF"}`,
		`{"s":"\\u0000"}`,
		`{"s":"\\ud800"}`,
		`{"s":"\\\\u0000"}`,
		`{"s":"\u0001\u001f\u007f\ufffd\uffff"}`,
		`{"s":"\" \\ \/ \b \f \n \r \t"}`,
		"{\"café\":\"日本語\",\"😀\":\"\\u00e9\",\"\":\"\x7f\"}",
		"{\"raw\":\"\xef\xbf\xbd \xf4\x8f\xbf\xbf \xc3\xa9\"}",
		`{"n":[0,-0,12.50,1e131071,-1e131071,99999e131067,0.00001e131076,1e-16383,0e131072,0e1073741822,0e-16383,1E+2]}`,
		`{"n":1` + strings.Repeat("0", 131071) + `}`,
		`{"n":0.` + strings.Repeat("0", 16383) + `}`,
	}
	for _, doc := range docs {
		require.Nil(t, pgtext.CheckJSON([]byte(doc)), "%.80q", doc)
	}
}

func TestCheckJSON_FindsAProblemAtTheBottomOfTheDeepestNesting(t *testing.T) {
	t.Parallel()
	const depth = 10000 // the most that encoding/json accepts
	doc := strings.Repeat("[", depth-1) + `{"k":"\u0000"}` + strings.Repeat("]", depth-1)
	got := pgtext.CheckJSON([]byte(doc))
	require.Equal(t, &pgtext.Problem{Path: strings.Repeat("[0]", depth-1) + ".k", Reason: pgtext.ReasonNUL}, got)
}

func TestCheckJSON_FindsTheLastEventOfABigBatch(t *testing.T) {
	t.Parallel()
	const events = 50000
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"source":"shop","type":"order.paid","payload":{"id":%d,"amount":12.50,"note":"café \ud83d\ude00 %s"}}`,
			i, strings.Repeat("x", 200))
	}
	good := b.String() + `]}`
	require.Greater(t, len(good), 12<<20)
	require.Nil(t, pgtext.CheckJSON([]byte(good)))

	bad := good[:len(good)-len(`"}}]}`)] + `\u0000"}}]}`
	got := pgtext.CheckJSON([]byte(bad))
	require.Equal(t, &pgtext.Problem{Path: fmt.Sprintf("events[%d].payload.note", events-1), Reason: pgtext.ReasonNUL}, got)
}

func TestProblem_ErrorNamesThePathAndTheReason(t *testing.T) {
	t.Parallel()
	require.EqualError(t, pgtext.CheckJSON([]byte(`{"payload":{"name":"\u0000"}}`)),
		`payload.name contains a NUL character (\u0000)`)
	require.EqualError(t, pgtext.CheckJSON([]byte(`{`)), "the document is not well-formed JSON")
}

func TestCheckString_RefusesNULAndInvalidUTF8(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", ""},
		{"café 日本語 😀 \uFFFD \U0010FFFF \x7f", ""},
		{`\u0000`, ""},
		{"a\x00b", pgtext.ReasonNUL},
		{"\x00", pgtext.ReasonNUL},
		{"a\xffb", pgtext.ReasonUTF8},
		{"\xe2\x82", pgtext.ReasonUTF8},
		{"\xc0\x80", pgtext.ReasonUTF8},
		{"\xed\xa0\x80", pgtext.ReasonUTF8},
		{"\xf4\x90\x80\x80", pgtext.ReasonUTF8},
		{"\xff\x00", pgtext.ReasonUTF8},
		{"\x00\xff", pgtext.ReasonNUL},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, pgtext.CheckString(tt.in), "%q", tt.in)
	}
}

func BenchmarkCheckJSON(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"events":[`)
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"source":"shop","type":"order.paid","payload":{"id":%d,"note":"café \ud83d\ude00","lines":[1,2.5,"x"]}}`, i)
	}
	doc := []byte(sb.String() + `]}`)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if p := pgtext.CheckJSON(doc); p != nil {
			b.Fatal(p)
		}
	}
}
