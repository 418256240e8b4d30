package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/daybook/daybook/internal/awstransport"
)

const (
	// objectBytesMax bounds one Get: a segment's NDJSON is at most
	// SegmentBytesMax, and gzip never grows it by more than a small fraction.
	objectBytesMax = SegmentBytesMax + SegmentBytesMax/16
	// segmentContentType is what a segment is stored as.
	segmentContentType = "application/gzip"
	// openTimeout bounds loading the AWS configuration and checking the
	// bucket when Open builds the store.
	openTimeout = 30 * time.Second
)

// S3Store archives into an S3 bucket, each object under prefix/key.
type S3Store struct {
	client *s3.Client
	bucket string
	prefix string // no leading or trailing slash; empty for the bucket's root
	// closeIdle releases the idle connections of a client that OpenS3 built;
	// nil when the caller owns the client.
	closeIdle func()
}

// NewS3Store archives into bucket under prefix (may be empty) through client.
// It checks that the bucket exists and is reachable (HeadBucket, which needs
// s3:ListBucket on the bucket), so a misconfigured archive fails at start,
// not on the first event.
func NewS3Store(ctx context.Context, client *s3.Client, bucket, prefix string) (*S3Store, error) {
	if client == nil {
		return nil, errors.New("archive s3: nil client")
	}
	if bucket == "" {
		return nil, errors.New("archive s3: no bucket")
	}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return nil, fmt.Errorf("archive bucket %q: %w", bucket, err)
	}
	return &S3Store{client: client, bucket: bucket, prefix: strings.Trim(prefix, "/")}, nil
}

// OpenS3 builds an S3 client from the default AWS configuration (region from
// AWS_REGION, credentials from the usual chain, endpoint from AWS_ENDPOINT_URL)
// and returns the store for bucket and prefix. With an endpoint override it
// uses path-style addressing, which emulators such as moto need. Close
// releases the client's idle connections.
func OpenS3(bucket, prefix string) (*S3Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("archive s3 config: %w", err)
	}
	closeIdle := awstransport.Own(&cfg, 0)
	pathStyle := os.Getenv("AWS_ENDPOINT_URL") != "" || os.Getenv("AWS_ENDPOINT_URL_S3") != ""
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle })
	store, err := NewS3Store(ctx, client, bucket, prefix)
	if err != nil {
		closeIdle()
		return nil, err
	}
	store.closeIdle = closeIdle
	return store, nil
}

// Close releases the idle connections of a client that OpenS3 built. A
// client passed to NewS3Store belongs to the caller and is left alone.
func (s *S3Store) Close() error {
	if s.closeIdle != nil {
		s.closeIdle()
	}
	return nil
}

// Key is the S3 object key that an archive key is stored under.
func (s *S3Store) Key(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

// PutSegment uploads body under key with one PutObject. A PUT that S3
// answered 200 is durable, so there is nothing to flush.
func (s *S3Store) PutSegment(ctx context.Context, key string, body []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	objectKey := s.Key(key)
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(objectKey),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		// Not Content-Encoding: gzip, which HTTP clients may undo on the way
		// back: the object is the compressed segment, byte for byte.
		ContentType: aws.String(segmentContentType),
	})
	if err != nil {
		return fmt.Errorf("archive s3://%s/%s: %w", s.bucket, objectKey, err)
	}
	return nil
}

// Get downloads the object under key; a missing one wraps ErrNotFound.
func (s *S3Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	objectKey := s.Key(key)
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(objectKey)})
	var noKey *types.NoSuchKey
	if errors.As(err, &noKey) {
		return nil, fmt.Errorf("archive s3://%s/%s: %w", s.bucket, objectKey, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("archive s3://%s/%s: %w", s.bucket, objectKey, err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(io.LimitReader(out.Body, objectBytesMax+1))
	if err != nil {
		return nil, fmt.Errorf("archive s3://%s/%s: %w", s.bucket, objectKey, err)
	}
	if len(body) > objectBytesMax {
		return nil, fmt.Errorf("archive s3://%s/%s: over %d bytes", s.bucket, objectKey, objectBytesMax)
	}
	return body, nil
}
