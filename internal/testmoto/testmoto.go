// Package testmoto gives tests an AWS configuration for moto_server and SQS
// queues of their own there, so that tests using S3 or SQS can run side by
// side and in CI, which starts moto with scripts/services.sh --moto. It never
// skips: without moto the test fails.
package testmoto

import (
	"context"
	"crypto/rand"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/awstransport"
	sqsq "github.com/daybook/daybook/transport/sqs"
)

// Endpoint is where moto_server listens: AWS_ENDPOINT_URL, else 127.0.0.1:4566.
func Endpoint() string {
	if e := os.Getenv("AWS_ENDPOINT_URL"); e != "" {
		return e
	}
	return "http://127.0.0.1:4566"
}

// AWSConfig is an SDK configuration for moto built without touching the
// environment (tests using it can run in parallel).
func AWSConfig(tb testing.TB) aws.Config {
	tb.Helper()
	endpoint := Endpoint()
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(context.Background(), "tcp", strings.TrimPrefix(endpoint, "http://"))
	require.NoErrorf(tb, err, "moto_server is not reachable at %s: start it with `scripts/services.sh --moto`", endpoint)
	require.NoError(tb, conn.Close())
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(endpoint),
	}
	// Closed last (cleanups run in reverse), after the queues are deleted with it.
	tb.Cleanup(awstransport.Own(&cfg, 0))
	return cfg
}

// Config is an SQSConfig with queue names of the test's own (created on
// open, deleted when the test ends) and the given visibility timeout (0 = default).
func Config(tb testing.TB, visibility time.Duration) sqsq.Config {
	tb.Helper()
	cfg := AWSConfig(tb)
	name := "daybook-test-" + strings.ToLower(rand.Text()[:12])
	c := sqsq.Config{
		Queue: name, DeadQueue: name + "-dlq", LogTopic: name + "-log", VisibilityTimeout: visibility, Create: true, AWS: &cfg,
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		client := sqs.NewFromConfig(cfg)
		// The work queue, its DLQ, and the log groups' queues and DLQs.
		if out, err := client.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String(name)}); err == nil {
			for _, url := range out.QueueUrls {
				_, _ = client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
			}
		}
		topics := sns.NewFromConfig(cfg)
		if out, err := topics.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(c.LogTopic)}); err == nil {
			_, _ = topics.DeleteTopic(ctx, &sns.DeleteTopicInput{TopicArn: out.TopicArn})
		}
	})
	return c
}

// Open opens the transport on fresh queues of the test's own.
func Open(tb testing.TB, visibility time.Duration) *sqsq.Queues {
	tb.Helper()
	s, err := sqsq.Open(context.Background(), Config(tb, visibility))
	require.NoError(tb, err)
	tb.Cleanup(s.Close)
	return s
}
