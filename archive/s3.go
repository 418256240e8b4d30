package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/daybook/daybook/internal/awstransport"
)

const (
	// putConcurrencyMax bounds the uploads in flight for one PutMany: enough
	// to hide S3's per-request latency, few enough to stay far below its
	// per-prefix request rate and the transport's connection pool.
	putConcurrencyMax = 16
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

// PutMany uploads the objects, at most putConcurrencyMax at a time. A PUT
// that S3 answered 200 is durable, so there is nothing to flush; a retried
// batch overwrites the same keys with the same bytes. The first failure (or a
// cancelled ctx) stops further uploads and is returned, naming its key;
// objects already uploaded stay, which is harmless for the same reason.
func (s *S3Store) PutMany(ctx context.Context, objects []Object) error {
	for _, o := range objects {
		if err := checkKey(o.Key); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(putConcurrencyMax)
	started := 0
	for _, o := range objects {
		if gctx.Err() != nil {
			break
		}
		started++
		g.Go(func() error {
			key := s.Key(o.Key)
			_, err := s.client.PutObject(gctx, &s3.PutObjectInput{
				Bucket:        aws.String(s.bucket),
				Key:           aws.String(key),
				Body:          bytes.NewReader(o.Body),
				ContentLength: aws.Int64(int64(len(o.Body))),
				ContentType:   aws.String("application/json"),
			})
			if err != nil {
				return fmt.Errorf("archive s3://%s/%s: %w", s.bucket, key, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if started < len(objects) {
		// Stopped by ctx before every upload began, with none failing.
		return fmt.Errorf("archive s3: %d of %d objects not uploaded: %w", len(objects)-started, len(objects), ctx.Err())
	}
	return nil
}
