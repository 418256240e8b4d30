// Package archive stores raw event payloads outside the database, keyed by
// date, source and id. It owns the file store (file://) and the S3 store
// (s3://bucket/prefix).
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

// PutMany writes every object in place and makes the batch durable with one
// syncfs: one disk flush for hundreds of files, where an fsync per file cost
// one each. A crash can leave a partial file only for an event whose attempt
// had not finished, and its next attempt writes it again: an event is marked
// COMPLETED only after PutMany returned.
func (s *FileStore) PutMany(ctx context.Context, objects []Object) error {
	if len(objects) == 0 {
		return nil
	}
	for _, o := range objects {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := checkKey(o.Key); err != nil {
			return err
		}
		path := s.Path(o.Key)
		err := os.WriteFile(path, o.Body, 0o600)
		if errors.Is(err, fs.ErrNotExist) {
			if err = os.MkdirAll(filepath.Dir(path), 0o750); err == nil {
				err = os.WriteFile(path, o.Body, 0o600)
			}
		}
		if err != nil {
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
