// Package archive stores raw event payloads outside the database, in
// segments: one compressed NDJSON object per processed batch (segment.go),
// each line located by a Pointer that the caller records beside the event.
// It owns the segment format, the file store (file://) and the S3 store
// (s3://bucket/prefix). Of Daybook it imports only internal/awstransport:
// callers (ingest, api, cmd/daybook) say what a line holds.
package archive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotFound is what Get returns for a key that holds no object.
var ErrNotFound = errors.New("archive object not found")

// Store keeps archived segments.
//
// PutSegment stores body under key and is durable when it returns: a crash
// after it cannot lose or tear the object. Keys come from SegmentKey, new for
// every attempt, so an object is written once and never overwritten.
//
// Get returns the bytes stored under key, or an error wrapping ErrNotFound
// when there are none.
//
// Both must be safe for concurrent use.
type Store interface {
	PutSegment(ctx context.Context, key string, body []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
}

// Open returns the store named by rawURL: file://path, or s3://bucket/prefix
// with the client built from the default AWS configuration (see OpenS3).
func Open(rawURL string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("archive url %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "file":
		dir := u.Host + u.Path // file://./var/archive has host "." and path "/var/archive"
		if dir == "" {
			return nil, fmt.Errorf("archive url %q: no directory", rawURL)
		}
		return NewFileStore(dir)
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("archive url %q: no bucket", rawURL)
		}
		return OpenS3(u.Host, u.Path)
	default:
		return nil, fmt.Errorf("archive url %q: scheme %q is not supported (want file:// or s3://)", rawURL, u.Scheme)
	}
}

// checkKey refuses keys that could escape the archive's root (a directory, or
// an S3 prefix that an IAM policy may scope the service to).
func checkKey(key string) error {
	if key == "" || strings.Contains(key, "..") || strings.HasPrefix(key, "/") || filepath.IsAbs(key) {
		return fmt.Errorf("archive key %q: must be relative, without '..'", key)
	}
	return nil
}

// FileStore archives into a directory tree.
type FileStore struct {
	dir string
}

// NewFileStore creates dir if missing.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("archive dir: %w", err)
	}
	return &FileStore{dir: dir}, nil
}

// Path is where key lives on disk.
func (s *FileStore) Path(key string) string { return filepath.Join(s.dir, filepath.FromSlash(key)) }

// PutSegment writes body to a temporary file beside the key's path, fsyncs
// it, renames it into place and fsyncs the directory: the object appears
// whole or not at all, and survives a crash once PutSegment returns. A crash
// before the rename leaves a hidden temporary file, never a torn object.
func (s *FileStore) PutSegment(ctx context.Context, key string, body []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	path := s.Path(key)
	dir := filepath.Dir(path)
	if err := s.mkdirDurable(dir); err != nil {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	if err := writeDurable(dir, path, body); err != nil {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	return nil
}

// writeDurable is the temp file, fsync, rename, fsync of the directory.
func writeDurable(dir, path string, body []byte) (err error) {
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(body); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// mkdirDurable creates dir and its missing parents under the store's root,
// fsyncing each parent that gained an entry, so that a segment made durable
// in a new day's directory cannot vanish with that directory in a crash.
// It costs nothing once the directory exists (once a day per store).
func (s *FileStore) mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	rel, err := filepath.Rel(s.dir, dir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("directory %s is not under the archive %s", dir, s.dir)
	}
	parent := s.dir
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		next := filepath.Join(parent, part)
		err := os.Mkdir(next, 0o750)
		switch {
		case err == nil:
			if err := syncDir(parent); err != nil {
				return err
			}
		case !errors.Is(err, fs.ErrExist):
			return err
		}
		parent = next
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// Get reads the object under key.
func (s *FileStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.Path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("archive %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", key, err)
	}
	return b, nil
}
