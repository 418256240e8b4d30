package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/daybook/daybook/transport/sqs"
)

// sqsQueues are one SQS scenario's queues and log topic on moto_server, named
// apart from every other run's (moto keeps them until it restarts).
type sqsQueues struct {
	endpoint string
	cfg      sqs.Config

	mu     sync.Mutex
	queues *sqs.Queues // opened at the first depth read, once daybook made them
}

// newSQSQueues checks that moto_server answers and names the queues.
func newSQSQueues(ctx context.Context, scenario string, salt uint64) (*sqsQueues, error) {
	endpoint := os.Getenv("AWS_ENDPOINT_URL")
	if endpoint == "" {
		endpoint = "http://127.0.0.1:4566"
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(endpoint, "http://"))
	if err != nil {
		return nil, fmt.Errorf("moto_server is not reachable at %s (start it with scripts/services.sh --moto): %w", endpoint, err)
	}
	conn.Close()
	name := fmt.Sprintf("chaos-%s-%x-%x", scenario, time.Now().UnixNano()&0xffffff, salt&0xffff)
	awsCfg := aws.Config{
		Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
	return &sqsQueues{endpoint: endpoint, cfg: sqs.Config{
		Queue: name + "-events", DeadQueue: name + "-events-dlq", LogTopic: name + "-log", AWS: &awsCfg,
	}}, nil
}

// env is what points a daybook process at these queues.
func (q *sqsQueues) env() []string {
	return []string{
		"DAYBOOK_QUEUE=sqs", "DAYBOOK_SQS_CREATE_QUEUES=true",
		"DAYBOOK_SQS_QUEUE=" + q.cfg.Queue, "DAYBOOK_SQS_DLQ=" + q.cfg.DeadQueue, "DAYBOOK_SNS_LOG_TOPIC=" + q.cfg.LogTopic,
		"DAYBOOK_SQS_CONSUMERS=8",
		"AWS_ENDPOINT_URL=" + q.endpoint, "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
	}
}

// depth is the work queue's messages waiting or in flight.
func (q *sqsQueues) depth(ctx context.Context) (int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queues == nil {
		opened, err := sqs.Open(ctx, q.cfg)
		if err != nil {
			return 0, err
		}
		q.queues = opened
	}
	return q.queues.Depth(ctx)
}

func (q *sqsQueues) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queues != nil {
		q.queues.Close()
	}
}
