// Package archive stores raw event payloads outside the database, keyed by
// date, source and id. It owns the file store (file://) and, later, S3.
package archive

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Object is one payload to archive.
type Object struct {
	Key  string
	Body []byte
}

// Store keeps archived payloads. PutMany must be idempotent (an attempt that
// is retried writes the same keys again) and durable when it returns.
type Store interface {
	PutMany(ctx context.Context, objects []Object) error
}

// Key is where an event's payload is archived: <yyyy>/<mm>/<dd>/<source>/<id>.json,
// dated by when Daybook received it (UTC).
func Key(receivedAt time.Time, source, id string) string {
	return fmt.Sprintf("%s/%s/%s.json", receivedAt.UTC().Format("2006/01/02"), source, id)
}

// Open returns the store named by rawURL (file://path).
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
	default:
		return nil, fmt.Errorf("archive url %q: scheme %q is not supported (want file://)", rawURL, u.Scheme)
	}
}

// FileStore archives into a directory tree.
type FileStore struct {
	dir string
}

// tmpDir holds files being written. Creating them beside their final name
// would cost a lookup in a directory that grows by one file per event (a
// day's directory holds millions); this one stays nearly empty.
const tmpDir = ".tmp"

// NewFileStore creates dir if missing.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, tmpDir), 0o750); err != nil {
		return nil, fmt.Errorf("archive dir: %w", err)
	}
	return &FileStore{dir: dir}, nil
}

// PutMany writes every object to a temporary file, makes them durable with
// one syncfs (not one fsync per file: a batch costs two disk flushes, not
// hundreds), renames each into place, and flushes again so the renames are
// durable too. A reader never sees half a payload; a retry replaces it.
func (s *FileStore) PutMany(ctx context.Context, objects []Object) error {
	if len(objects) == 0 {
		return nil
	}
	tmps := make([]string, 0, len(objects))
	defer func() {
		for _, t := range tmps {
			os.Remove(t) // no-op once renamed
		}
	}()
	for _, o := range objects {
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.Contains(o.Key, "..") || filepath.IsAbs(o.Key) || o.Key == "" {
			return fmt.Errorf("archive key %q: must be relative, without '..'", o.Key)
		}
		tmp, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "put-*")
		if err != nil {
			return fmt.Errorf("archive %s: %w", o.Key, err)
		}
		tmps = append(tmps, tmp.Name())
		_, werr := tmp.Write(o.Body)
		if cerr := tmp.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("archive %s: %w", o.Key, werr)
		}
	}
	if err := s.sync(); err != nil {
		return err
	}
	for i, o := range objects {
		path := s.Path(o.Key)
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return fmt.Errorf("archive %s: %w", o.Key, err)
		}
		if err := os.Rename(tmps[i], path); err != nil {
			return fmt.Errorf("archive %s: %w", o.Key, err)
		}
	}
	return s.sync()
}

// sync flushes the file system that holds the archive.
func (s *FileStore) sync() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("archive sync: %w", err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("archive sync: %w", errors.Join(err, d.Sync()))
	}
	return nil
}

// Path is where key lives on disk.
func (s *FileStore) Path(key string) string { return filepath.Join(s.dir, filepath.FromSlash(key)) }
