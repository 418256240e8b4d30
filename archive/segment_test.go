package archive

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSegmentKey_IsDatedInUTCAndNewEachTime(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 23, 30, 0, 0, time.FixedZone("X", -3*3600)) // 02:30 UTC next day
	a, err := SegmentKey(at)
	require.NoError(t, err)
	b, err := SegmentKey(at)
	require.NoError(t, err)

	pattern := `^segments/2026/11/30/[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}\.ndjson\.gz$`
	require.Regexp(t, regexp.MustCompile(pattern), a)
	require.Regexp(t, regexp.MustCompile(pattern), b)
	require.NotEqual(t, a, b)
	require.NoError(t, checkKey(a))
}

func TestSegmentWriter_RoundTripsEveryLineAtItsPointer(t *testing.T) {
	t.Parallel()
	lines := []string{`{"id":"a","payload":{"n":1}}`, `{"id":"b","note":"café ✓"}`, `{}`, `{"id":"d","s":"a\nb"}`}
	w := NewSegmentWriter("segments/2026/01/02/x.ndjson.gz")
	var pointers []Pointer
	for _, l := range lines {
		p, err := w.Append([]byte(l))
		require.NoError(t, err)
		pointers = append(pointers, p)
	}
	body, err := w.Close()
	require.NoError(t, err)

	// Offsets and lengths are in the uncompressed NDJSON, hashes of the line alone.
	var offset int64
	for i, l := range lines {
		require.Equal(t, Pointer{Segment: w.Key(), Offset: offset, Length: len(l), SHA256: sha256.Sum256([]byte(l))}, pointers[i])
		offset += int64(len(l)) + 1
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	require.NoError(t, err)
	ndjson, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.Equal(t, strings.Join(lines, "\n")+"\n", string(ndjson), "the object is plain gzip of NDJSON")

	seg, err := ParseSegment(w.Key(), body)
	require.NoError(t, err)
	require.Equal(t, len(lines), seg.Lines())
	for i, p := range pointers {
		got, err := seg.Line(p)
		require.NoError(t, err)
		require.Equal(t, lines[i], string(got))
	}
}

func TestSegment_LineRefusesPointersThatDoNotMatch(t *testing.T) {
	t.Parallel()
	w := NewSegmentWriter("k.ndjson.gz")
	first, err := w.Append([]byte(`{"a":1}`))
	require.NoError(t, err)
	second, err := w.Append([]byte(`{"b":2}`))
	require.NoError(t, err)
	body, err := w.Close()
	require.NoError(t, err)
	seg, err := ParseSegment("k.ndjson.gz", body)
	require.NoError(t, err)

	wrongHash := first
	wrongHash.SHA256 = second.SHA256
	shifted := first
	shifted.Offset++
	shifted.Length--
	beyond := second
	beyond.Offset += 10
	straddling := first
	straddling.Length += 3
	for name, p := range map[string]Pointer{"wrong hash": wrongHash, "shifted": shifted, "beyond the end": beyond, "across a newline": straddling} {
		_, err := seg.Line(p)
		require.ErrorIs(t, err, ErrCorrupt, name)
	}
	other := first
	other.Segment = "other.ndjson.gz"
	_, err = seg.Line(other)
	require.ErrorContains(t, err, "read in segment k.ndjson.gz")
}

func TestParseSegment_RefusesBytesThatAreNotGzip(t *testing.T) {
	t.Parallel()
	_, err := ParseSegment("k", []byte(`{"plain":"json"}`+"\n"))
	require.ErrorIs(t, err, ErrCorrupt)

	w := NewSegmentWriter("k")
	_, err = w.Append([]byte(`{"a":1}`))
	require.NoError(t, err)
	body, err := w.Close()
	require.NoError(t, err)
	_, err = ParseSegment("k", body[:len(body)-5]) // truncated: its trailer is gone
	require.ErrorIs(t, err, ErrCorrupt)
}

func TestSegmentWriter_RefusesLinesItCannotHold(t *testing.T) {
	t.Parallel()
	w := NewSegmentWriter("k")
	for name, line := range map[string][]byte{
		"empty":     nil,
		"newline":   []byte("{\"a\":\n1}"),
		"too large": bytes.Repeat([]byte("x"), LineBytesMax+1),
	} {
		_, err := w.Append(line)
		require.Error(t, err, name)
		require.Error(t, CheckLine(line), name)
	}
	require.Zero(t, w.Lines())
	require.NoError(t, CheckLine(bytes.Repeat([]byte("x"), LineBytesMax)))
}

func TestSegmentWriter_IsFullAtItsLimits(t *testing.T) {
	t.Parallel()
	w := NewSegmentWriter("k")
	for i := range SegmentLinesMax {
		_, err := w.Append(fmt.Appendf(nil, `{"i":%d}`, i))
		require.NoError(t, err)
	}
	require.False(t, w.Fits(1))
	_, err := w.Append([]byte(`{}`))
	require.ErrorContains(t, err, "is full")

	big := bytes.Repeat([]byte("x"), LineBytesMax)
	w = NewSegmentWriter("k")
	for w.Fits(len(big)) {
		_, err := w.Append(big)
		require.NoError(t, err)
	}
	require.Equal(t, SegmentBytesMax/(LineBytesMax+1), w.Lines())
	require.True(t, NewSegmentWriter("k").Fits(LineBytesMax), "an empty segment takes any line")
	_, err = w.Close()
	require.NoError(t, err)
	_, err = w.Append([]byte(`{}`))
	require.ErrorContains(t, err, "after close")
}
