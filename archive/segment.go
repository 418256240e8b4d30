package archive

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/google/uuid"
)

// A segment is the gzip of NDJSON: one line per archived record, each line
// its exact bytes and a '\n'. A Pointer locates a line in the uncompressed
// NDJSON, so reading one record back is one Get, one gunzip and a slice.
const (
	// SegmentLinesMax bounds the lines of one segment (a batch is at most
	// 500 events).
	SegmentLinesMax = 1000
	// SegmentBytesMax bounds a segment's uncompressed NDJSON. A writer that
	// reaches it is full: the caller starts another segment, so even a batch
	// of the largest events is read back within this much memory.
	SegmentBytesMax = 64 << 20
	// LineBytesMax bounds one line: far above what the API admits (a 256 KiB
	// body, even with every character escaped by the JSON encoder).
	LineBytesMax = 4 << 20
	// segmentExt names the format in every key, so a reader knows it.
	segmentExt = ".ndjson.gz"
	// segmentLevel trades 8–12% more bytes than gzip's default for a half
	// to a third of its CPU, measured on records of the load tool's shape
	// (those of BenchmarkSegment_LoadtestEvents in ingest).
	segmentLevel = gzip.BestSpeed
)

// gzipWriters keeps compressors between segments: a new one allocates its
// tables (about 800 KB), which cost more than compressing a batch of 66
// records. It holds no state between uses (Reset starts a new stream).
var gzipWriters = sync.Pool{New: func() any {
	w, err := gzip.NewWriterLevel(io.Discard, segmentLevel)
	if err != nil {
		panic(err) // only for a level out of range: segmentLevel is a constant
	}
	return w
}}

// ErrCorrupt marks archived bytes that are not what their pointer promised:
// a segment that does not gunzip, a line outside it, or a line whose SHA-256
// differs from the recorded one.
var ErrCorrupt = errors.New("archived bytes do not match their pointer")

// Pointer locates one line of a segment: the bytes [Offset, Offset+Length) of
// its uncompressed NDJSON (without the '\n'), whose SHA-256 is SHA256.
type Pointer struct {
	Segment string
	Offset  int64
	Length  int
	SHA256  [sha256.Size]byte
}

func (p Pointer) String() string {
	return fmt.Sprintf("%s[%d:+%d]", p.Segment, p.Offset, p.Length)
}

// SegmentKey is a new segment's key: segments/<yyyy>/<mm>/<dd>/<uuidv7>.ndjson.gz,
// dated by at (UTC). Each call gives a key no other call gives, so every
// attempt at a batch writes a segment of its own and no object is ever
// overwritten: a row that points into a segment points at the bytes that were
// there when its attempt committed.
func SegmentKey(at time.Time) (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("segment key: %w", err)
	}
	return "segments/" + at.UTC().Format("2006/01/02") + "/" + id.String() + segmentExt, nil
}

// CheckLine refuses a line that a segment cannot hold: empty, longer than
// LineBytesMax, or holding a '\n' (which would split it in two).
func CheckLine(line []byte) error {
	switch {
	case len(line) == 0:
		return errors.New("archive line is empty")
	case len(line) > LineBytesMax:
		return fmt.Errorf("archive line has %d bytes, over the limit of %d", len(line), LineBytesMax)
	case bytes.IndexByte(line, '\n') >= 0:
		return errors.New("archive line holds a newline")
	}
	return nil
}

// SegmentWriter builds one segment in memory. It is not safe for concurrent use.
type SegmentWriter struct {
	key        string
	compressed bytes.Buffer
	gz         *gzip.Writer
	size       int64 // uncompressed bytes so far
	lines      int
	closed     bool
}

// NewSegmentWriter starts the segment that will be stored under key. Close
// it, or its compressor is not reused.
func NewSegmentWriter(key string) *SegmentWriter {
	w := &SegmentWriter{key: key}
	w.gz = gzipWriters.Get().(*gzip.Writer)
	w.gz.Reset(&w.compressed)
	return w
}

// Key is where the segment is to be stored.
func (w *SegmentWriter) Key() string { return w.key }

// Lines is how many lines the segment holds.
func (w *SegmentWriter) Lines() int { return w.lines }

// Fits reports whether a line of n bytes can still be appended. An empty
// segment takes any line that CheckLine accepts.
func (w *SegmentWriter) Fits(n int) bool {
	if w.lines == 0 {
		return true
	}
	return w.lines < SegmentLinesMax && w.size+int64(n)+1 <= SegmentBytesMax
}

// Append adds line (its bytes, then '\n') and returns where it lies.
func (w *SegmentWriter) Append(line []byte) (Pointer, error) {
	if w.closed {
		return Pointer{}, errors.New("segment writer: append after close")
	}
	if err := CheckLine(line); err != nil {
		return Pointer{}, err
	}
	if !w.Fits(len(line)) {
		return Pointer{}, fmt.Errorf("segment %s is full (%d lines, %d bytes)", w.key, w.lines, w.size)
	}
	p := Pointer{Segment: w.key, Offset: w.size, Length: len(line), SHA256: sha256.Sum256(line)}
	if _, err := w.gz.Write(line); err != nil {
		return Pointer{}, fmt.Errorf("segment %s: %w", w.key, err)
	}
	if _, err := w.gz.Write([]byte{'\n'}); err != nil {
		return Pointer{}, fmt.Errorf("segment %s: %w", w.key, err)
	}
	w.size += int64(len(line)) + 1
	w.lines++
	return p, nil
}

// Close ends the segment and returns its bytes, to be stored under Key.
func (w *SegmentWriter) Close() ([]byte, error) {
	if !w.closed {
		w.closed = true
		err := w.gz.Close()
		w.gz.Reset(io.Discard) // let go of this segment's buffer before sharing the compressor
		gzipWriters.Put(w.gz)
		w.gz = nil
		if err != nil {
			return nil, fmt.Errorf("segment %s: %w", w.key, err)
		}
	}
	return w.compressed.Bytes(), nil
}

// Segment is a segment read back: its uncompressed NDJSON.
type Segment struct {
	key    string
	ndjson []byte
}

// ParseSegment gunzips the bytes stored under key. More than
// SegmentBytesMax of NDJSON, or bytes that do not gunzip, are ErrCorrupt.
func ParseSegment(key string, body []byte) (*Segment, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("segment %s: %w: %w", key, ErrCorrupt, err)
	}
	ndjson, err := io.ReadAll(io.LimitReader(zr, SegmentBytesMax+1))
	if err != nil {
		return nil, fmt.Errorf("segment %s: %w: %w", key, ErrCorrupt, err)
	}
	if len(ndjson) > SegmentBytesMax {
		return nil, fmt.Errorf("segment %s: %w: more than %d bytes uncompressed", key, ErrCorrupt, SegmentBytesMax)
	}
	return &Segment{key: key, ndjson: ndjson}, nil
}

// ReadSegment fetches the segment under key and gunzips it.
func ReadSegment(ctx context.Context, s Store, key string) (*Segment, error) {
	body, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return ParseSegment(key, body)
}

// ReadLine reads back the line p points at: one Get, one gunzip, checked as
// Segment.Line checks it.
func ReadLine(ctx context.Context, s Store, p Pointer) ([]byte, error) {
	seg, err := ReadSegment(ctx, s, p.Segment)
	if err != nil {
		return nil, err
	}
	return seg.Line(p)
}

// Line returns the line p points at, after checking that it lies inside the
// segment, ends where a line ends and has the recorded SHA-256: never other
// bytes than those that were archived.
func (s *Segment) Line(p Pointer) ([]byte, error) {
	if p.Segment != s.key {
		return nil, fmt.Errorf("pointer %s read in segment %s", p, s.key)
	}
	end := p.Offset + int64(p.Length)
	if p.Offset < 0 || p.Length <= 0 || end >= int64(len(s.ndjson)) || s.ndjson[end] != '\n' {
		return nil, fmt.Errorf("%s: %w: not a line of the segment (%d bytes)", p, ErrCorrupt, len(s.ndjson))
	}
	line := s.ndjson[p.Offset:end]
	if sha256.Sum256(line) != p.SHA256 {
		return nil, fmt.Errorf("%s: %w: SHA-256 differs", p, ErrCorrupt)
	}
	return line, nil
}

// Lines is how many lines the segment holds.
func (s *Segment) Lines() int { return bytes.Count(s.ndjson, []byte{'\n'}) }
