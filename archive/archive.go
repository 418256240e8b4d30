// Package archive stores raw event payloads outside the database, keyed by
// date, source and id. It owns the file store (file://) and, later, S3.
package archive

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Store keeps archived payloads. Put must be idempotent: an attempt that is
// retried writes the same key again.
type Store interface {
	Put(ctx context.Context, key string, body []byte) error
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

// NewFileStore creates dir if missing.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("archive dir: %w", err)
	}
	return &FileStore{dir: dir}, nil
}

// Put writes body under key atomically (temp file, fsync, rename), so a
// reader never sees half a payload and a retry simply replaces it.
func (s *FileStore) Put(ctx context.Context, key string, body []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if strings.Contains(key, "..") || filepath.IsAbs(key) {
		return fmt.Errorf("archive key %q: must be a relative path without ..", key)
	}
	path := filepath.Join(s.dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".put-*")
	if err != nil {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return fmt.Errorf("archive %s: %w", key, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("archive %s: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("archive %s: %w", key, err)
	}
	return nil
}

// Path is where key lives on disk.
func (s *FileStore) Path(key string) string { return filepath.Join(s.dir, filepath.FromSlash(key)) }
