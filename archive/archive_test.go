package archive

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFileStore_PutSegmentWritesTheExactBytesAndGetReadsThemBack(t *testing.T) {
	t.Parallel()
	store, err := Open("file://" + t.TempDir())
	require.NoError(t, err)
	fs := store.(*FileStore)
	ctx := t.Context()
	const key = "segments/2026/01/02/a.ndjson.gz"

	require.NoError(t, fs.PutSegment(ctx, key, []byte("segment bytes")))

	got, err := os.ReadFile(fs.Path(key))
	require.NoError(t, err)
	require.Equal(t, "segment bytes", string(got))
	got, err = fs.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "segment bytes", string(got))
	entries, err := os.ReadDir(filepath.Dir(fs.Path(key)))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left beside the segment")
	require.Equal(t, "a.ndjson.gz", entries[0].Name())
}

func TestFileStore_GetOfAMissingKeyIsErrNotFound(t *testing.T) {
	t.Parallel()
	fs, err := NewFileStore(t.TempDir())
	require.NoError(t, err)

	for _, key := range []string{"segments/2026/01/02/none.ndjson.gz", "no-directory-either"} {
		_, err = fs.Get(t.Context(), key)
		require.ErrorIs(t, err, ErrNotFound, key)
		require.ErrorContains(t, err, key)
	}
}

// The rename into place fails (a non-empty directory holds the key's path):
// PutSegment fails, and neither a torn object nor its temporary file remains.
func TestFileStore_FailedRenameLeavesNoTemporaryFile(t *testing.T) {
	t.Parallel()
	fs, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	const key = "segments/2026/01/02/b.ndjson.gz"
	require.NoError(t, os.MkdirAll(filepath.Join(fs.Path(key), "occupied"), 0o750))

	err = fs.PutSegment(t.Context(), key, []byte("body"))

	require.ErrorContains(t, err, "archive "+key+": ")
	entries, err := os.ReadDir(filepath.Dir(fs.Path(key)))
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, "b.ndjson.gz", entries[0].Name())
	require.True(t, entries[0].IsDir(), "the directory that was in the way, untouched")
}

// A regular file where a directory must go makes every write fail, as the
// processor tests break the archive.
func TestFileStore_PutSegmentUnderAFileFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fs, err := NewFileStore(dir)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "segments"), []byte("not a directory"), 0o600))

	err = fs.PutSegment(t.Context(), "segments/2026/01/02/c.ndjson.gz", []byte("body"))

	require.ErrorContains(t, err, "not a directory")
}

func TestFileStore_RefusesEscapingKeysAndACancelledContext(t *testing.T) {
	t.Parallel()
	fs, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	for _, key := range []string{"../x.ndjson.gz", "/etc/x.ndjson.gz", "", "segments/../../x"} {
		require.ErrorContains(t, fs.PutSegment(t.Context(), key, []byte("{}")), "must be relative", key)
		_, err := fs.Get(t.Context(), key)
		require.ErrorContains(t, err, "must be relative", key)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, fs.PutSegment(ctx, "segments/x.ndjson.gz", []byte("{}")), context.Canceled)
	require.NoFileExists(t, fs.Path("segments/x.ndjson.gz"))
}

func TestOpen_RejectsUnknownScheme(t *testing.T) {
	t.Parallel()
	_, err := Open("ftp://x/y")
	require.ErrorContains(t, err, "not supported")
}
