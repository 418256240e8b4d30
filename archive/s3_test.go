package archive

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"sort"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testmoto"
)

// newTestClient is an S3 client for moto built without touching the
// environment, so that tests using it can run in parallel. It fails the test
// (never skips) when moto is not listening: CI starts it.
func newTestClient(t *testing.T) *s3.Client {
	t.Helper()
	return s3.NewFromConfig(testmoto.AWSConfig(t), func(o *s3.Options) { o.UsePathStyle = true })
}

// newTestBucket creates a bucket with a random name, emptied and deleted
// when the test ends.
func newTestBucket(t *testing.T, client *s3.Client) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	bucket := "daybook-test-" + hex.EncodeToString(b)
	_, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, key := range listKeys(ctx, t, client, bucket) {
			_, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			require.NoError(t, err)
		}
		_, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
		require.NoError(t, err)
	})
	return bucket
}

// listKeys is every key in bucket, sorted.
func listKeys(ctx context.Context, t *testing.T, client *s3.Client, bucket string) []string {
	t.Helper()
	var keys []string
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		require.NoError(t, err)
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	sort.Strings(keys)
	return keys
}

// getObject is the body and content type stored under key.
func getObject(t *testing.T, client *s3.Client, bucket, key string) (body, contentType string) {
	t.Helper()
	out, err := client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	require.NoError(t, err)
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	require.NoError(t, err)
	return string(b), aws.ToString(out.ContentType)
}

func TestS3Store_PutSegmentWritesExactBytesUnderPrefixAndGetReadsThem(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	store, err := NewS3Store(t.Context(), client, bucket, "events/")
	require.NoError(t, err)
	w := NewSegmentWriter("segments/2026/03/04/a.ndjson.gz")
	first, err := w.Append([]byte(`{"order_id":"o-1","status":"paid"}`))
	require.NoError(t, err)
	second, err := w.Append([]byte(`{"order_id":"o-2","note":"caf\u00e9 \u2713"}`))
	require.NoError(t, err)
	body, err := w.Close()
	require.NoError(t, err)

	require.NoError(t, store.PutSegment(t.Context(), w.Key(), body))

	require.Equal(t, []string{"events/segments/2026/03/04/a.ndjson.gz"}, listKeys(t.Context(), t, client, bucket))
	stored, contentType := getObject(t, client, bucket, "events/"+w.Key())
	require.Equal(t, string(body), stored, "one PUT of the compressed segment, byte for byte")
	require.Equal(t, "application/gzip", contentType)
	got, err := store.Get(t.Context(), w.Key())
	require.NoError(t, err)
	require.Equal(t, body, got)
	line, err := ReadLine(t.Context(), store, second)
	require.NoError(t, err)
	require.Equal(t, `{"order_id":"o-2","note":"caf\u00e9 \u2713"}`, string(line))
	line, err = ReadLine(t.Context(), store, first)
	require.NoError(t, err)
	require.Equal(t, `{"order_id":"o-1","status":"paid"}`, string(line))
}

func TestS3Store_GetOfAMissingKeyIsErrNotFound(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	store, err := NewS3Store(t.Context(), client, bucket, "p")
	require.NoError(t, err)

	_, err = store.Get(t.Context(), "segments/2026/01/02/none.ndjson.gz")

	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorContains(t, err, "s3://"+bucket+"/p/segments/2026/01/02/none.ndjson.gz")
}

func TestS3Store_EmptyPrefixWritesAtBucketRoot(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	for _, prefix := range []string{"", "/"} {
		store, err := NewS3Store(t.Context(), client, bucket, prefix)
		require.NoError(t, err)
		require.Equal(t, "segments/x.ndjson.gz", store.Key("segments/x.ndjson.gz"))
		require.NoError(t, store.PutSegment(t.Context(), "segments/x.ndjson.gz", []byte("x")))
	}
	require.Equal(t, []string{"segments/x.ndjson.gz"}, listKeys(t.Context(), t, client, bucket))
}

func TestS3Store_PutSegmentIntoMissingBucketNamesTheKey(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	store, err := NewS3Store(t.Context(), client, bucket, "p")
	require.NoError(t, err)
	// As if the bucket vanished after the store was built: point the store at
	// a bucket that does not exist (deleting the real one would break its
	// cleanup).
	store.bucket = bucket + "-gone"

	err = store.PutSegment(t.Context(), "segments/x.ndjson.gz", []byte("x"))

	require.ErrorContains(t, err, "s3://"+bucket+"-gone/p/segments/x.ndjson.gz")
	require.ErrorContains(t, err, "NoSuchBucket")
	_, err = store.Get(t.Context(), "segments/x.ndjson.gz")
	require.ErrorContains(t, err, "NoSuchBucket")
	require.NotErrorIs(t, err, ErrNotFound, "a missing bucket is not a missing segment")
}

func TestNewS3Store_RefusesMissingBucket(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)

	_, err := NewS3Store(t.Context(), client, "daybook-test-does-not-exist", "p")

	require.ErrorContains(t, err, `archive bucket "daybook-test-does-not-exist"`)
}

func TestS3Store_PutSegmentWithCancelledContextUploadsNothing(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	store, err := NewS3Store(t.Context(), client, bucket, "p")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	err = store.PutSegment(ctx, "segments/x.ndjson.gz", []byte("x"))

	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, listKeys(t.Context(), t, client, bucket))
}

func TestS3Store_RefusesEscapingKeysBeforeUploading(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	store, err := NewS3Store(t.Context(), client, bucket, "p")
	require.NoError(t, err)

	for _, key := range []string{"../x.ndjson.gz", "/x.ndjson.gz", ""} {
		require.ErrorContains(t, store.PutSegment(t.Context(), key, []byte("x")), "must be relative")
		_, err := store.Get(t.Context(), key)
		require.ErrorContains(t, err, "must be relative")
	}
	require.Empty(t, listKeys(t.Context(), t, client, bucket))
}

// Not parallel: t.Setenv configures the default AWS configuration that Open
// reads.
func TestOpen_S3URLUsesDefaultAWSConfig(t *testing.T) {
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ENDPOINT_URL", testmoto.Endpoint())

	store, err := Open("s3://" + bucket + "/daybook/archive/")
	require.NoError(t, err)
	s3store, ok := store.(*S3Store)
	require.True(t, ok, "Open returned %T", store)
	t.Cleanup(func() { require.NoError(t, s3store.Close()) })
	require.NoError(t, store.PutSegment(t.Context(), "segments/2026/01/02/s.ndjson.gz", []byte(`via open`)))

	require.Equal(t, []string{"daybook/archive/segments/2026/01/02/s.ndjson.gz"}, listKeys(t.Context(), t, client, bucket))
	body, err := store.Get(t.Context(), "segments/2026/01/02/s.ndjson.gz")
	require.NoError(t, err)
	require.Equal(t, `via open`, string(body))

	_, err = Open("s3:///prefix")
	require.ErrorContains(t, err, "no bucket")
	var nf interface{ ErrorCode() string }
	_, err = Open("s3://daybook-test-does-not-exist/p")
	require.ErrorContains(t, err, "daybook-test-does-not-exist")
	require.True(t, errors.As(err, &nf), "want an API error, got %v", err)
}
