package archive

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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

func TestS3Store_PutManyWritesExactBytesUnderPrefix(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	store, err := NewS3Store(t.Context(), client, bucket, "events/")
	require.NoError(t, err)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	objects := []Object{
		{Key: Key(at, "order_updates", "a1"), Body: []byte(`{"order_id":"o-1","status":"paid"}`)},
		{Key: Key(at, "order_updates", "a2"), Body: []byte(`{"order_id":"o-2","note":"caf\u00e9 \u2713"}`)},
		{Key: Key(at.Add(24*time.Hour), "payments", "p1"), Body: []byte(`{}`)},
	}

	require.NoError(t, store.PutMany(t.Context(), objects))

	require.Equal(t, []string{
		"events/2026/03/04/order_updates/a1.json",
		"events/2026/03/04/order_updates/a2.json",
		"events/2026/03/05/payments/p1.json",
	}, listKeys(t.Context(), t, client, bucket))
	for _, o := range objects {
		body, contentType := getObject(t, client, bucket, "events/"+o.Key)
		require.Equal(t, string(o.Body), body)
		require.Equal(t, "application/json", contentType)
	}
}

func TestS3Store_PutManyAgainOverwrites(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	store, err := NewS3Store(t.Context(), client, bucket, "p")
	require.NoError(t, err)

	require.NoError(t, store.PutMany(t.Context(), []Object{
		{Key: "2026/01/02/s/1.json", Body: []byte(`{"a":1}`)},
		{Key: "2026/01/02/s/2.json", Body: []byte(`{"b":1}`)},
	}))
	require.NoError(t, store.PutMany(t.Context(), []Object{{Key: "2026/01/02/s/1.json", Body: []byte(`{"a":2}`)}}))

	require.Equal(t, []string{"p/2026/01/02/s/1.json", "p/2026/01/02/s/2.json"}, listKeys(t.Context(), t, client, bucket))
	body, _ := getObject(t, client, bucket, "p/2026/01/02/s/1.json")
	require.Equal(t, `{"a":2}`, body)
	body, _ = getObject(t, client, bucket, "p/2026/01/02/s/2.json")
	require.Equal(t, `{"b":1}`, body)
}

func TestS3Store_EmptyPrefixWritesAtBucketRoot(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	for _, prefix := range []string{"", "/"} {
		store, err := NewS3Store(t.Context(), client, bucket, prefix)
		require.NoError(t, err)
		require.Equal(t, "2026/01/02/s/1.json", store.Key("2026/01/02/s/1.json"))
		require.NoError(t, store.PutMany(t.Context(), []Object{{Key: "2026/01/02/s/1.json", Body: []byte(`{"x":1}`)}}))
	}
	require.Equal(t, []string{"2026/01/02/s/1.json"}, listKeys(t.Context(), t, client, bucket))
}

func TestS3Store_PutManyUploadsHundredObjectsInOneCall(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	store, err := NewS3Store(t.Context(), client, bucket, "bulk")
	require.NoError(t, err)
	const n = 100 // several times putConcurrencyMax
	objects := make([]Object, n)
	want := make([]string, n)
	for i := range objects {
		objects[i] = Object{Key: fmt.Sprintf("2026/01/02/s/%03d.json", i), Body: fmt.Appendf(nil, `{"i":%d}`, i)}
		want[i] = "bulk/" + objects[i].Key
	}

	require.NoError(t, store.PutMany(t.Context(), objects))

	require.Equal(t, want, listKeys(t.Context(), t, client, bucket))
	body, _ := getObject(t, client, bucket, "bulk/2026/01/02/s/057.json")
	require.Equal(t, `{"i":57}`, body)
}

func TestS3Store_PutManyIntoMissingBucketNamesTheKey(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	store, err := NewS3Store(t.Context(), client, bucket, "p")
	require.NoError(t, err)
	// As if the bucket vanished after the store was built: point the store at
	// a bucket that does not exist (deleting the real one would break its
	// cleanup).
	store.bucket = bucket + "-gone"

	err = store.PutMany(t.Context(), []Object{{Key: "2026/01/02/s/1.json", Body: []byte(`{}`)}})

	require.ErrorContains(t, err, "s3://"+bucket+"-gone/p/2026/01/02/s/1.json")
	require.ErrorContains(t, err, "NoSuchBucket")
}

func TestNewS3Store_RefusesMissingBucket(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)

	_, err := NewS3Store(t.Context(), client, "daybook-test-does-not-exist", "p")

	require.ErrorContains(t, err, `archive bucket "daybook-test-does-not-exist"`)
}

func TestS3Store_PutManyWithCancelledContextUploadsNothing(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	store, err := NewS3Store(t.Context(), client, bucket, "p")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	err = store.PutMany(ctx, []Object{{Key: "2026/01/02/s/1.json", Body: []byte(`{}`)}, {Key: "2026/01/02/s/2.json", Body: []byte(`{}`)}})

	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, listKeys(t.Context(), t, client, bucket))
}

func TestS3Store_PutManyRefusesEscapingKeysBeforeUploading(t *testing.T) {
	t.Parallel()
	client := newTestClient(t)
	bucket := newTestBucket(t, client)
	store, err := NewS3Store(t.Context(), client, bucket, "p")
	require.NoError(t, err)

	for _, key := range []string{"../x.json", "/x.json", ""} {
		err := store.PutMany(t.Context(), []Object{{Key: "2026/01/02/s/1.json", Body: []byte(`{}`)}, {Key: key, Body: []byte(`{}`)}})
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
	require.NoError(t, store.PutMany(t.Context(), []Object{{Key: "2026/01/02/s/1.json", Body: []byte(`{"via":"open"}`)}}))

	require.Equal(t, []string{"daybook/archive/2026/01/02/s/1.json"}, listKeys(t.Context(), t, client, bucket))
	body, _ := getObject(t, client, bucket, "daybook/archive/2026/01/02/s/1.json")
	require.Equal(t, `{"via":"open"}`, body)

	_, err = Open("s3:///prefix")
	require.ErrorContains(t, err, "no bucket")
	var nf interface{ ErrorCode() string }
	_, err = Open("s3://daybook-test-does-not-exist/p")
	require.ErrorContains(t, err, "daybook-test-does-not-exist")
	require.True(t, errors.As(err, &nf), "want an API error, got %v", err)
}
