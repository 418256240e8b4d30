// Package sqs is the SQS transport, the production one. It owns everything
// about that wire: admission onto the work queue (the Redis gate as a fast
// path it fails open around), the message layout, visibility, the work
// queue's redrive to its DLQ, and the event log on an SNS topic with one SQS
// queue per consumer group.
package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/daybook/daybook/internal/awstransport"
	"github.com/daybook/daybook/transport"
)

// Names of the SQS queues on the outside contract (DESIGN.md); dots are not
// allowed in SQS queue names.
const (
	QueueDefault     = "daybook-events"
	DeadQueueDefault = "daybook-events-dlq"
	// LogTopicDefault is the SNS topic of the event log.
	LogTopicDefault = "daybook-log"
	// MaxReceiveCount is the redrive policy's maxReceiveCount: after this
	// many receives without a delete, SQS moves a message to the DLQ.
	MaxReceiveCount = 5
)

// Message attributes of the SQS layout: the body is the payload, and the
// watermill uuid and metadata travel as two string attributes, so that any
// amount of metadata fits SQS's limit of 10 attributes.
const (
	sqsAttrUUID     = "uuid"
	sqsAttrMetadata = "metadata"
)

// Metadata the SQS subscriber sets on each received message. Keys with the
// prefix MetaPrefix describe one delivery and are never sent again.
const (
	MetaPrefix        = "awssqs."
	MetaReceiptHandle = "awssqs.receipt_handle"
	MetaQueueURL      = "awssqs.queue_url"
	// MetaReceiveCount is SQS's ApproximateReceiveCount of this delivery.
	MetaReceiveCount = "awssqs.receive_count"
)

// Timeouts of SQS calls. A receive long-polls for sqsWaitTime, so its HTTP
// timeout must exceed that; a send must fail fast enough for the API to
// answer 503 within a client's patience.
const (
	sqsWaitTime          = 10 * time.Second
	sqsReceiveTimeout    = sqsWaitTime + 10*time.Second
	sqsCallTimeout       = 5 * time.Second
	sqsReconnectSleep    = time.Second
	sqsVisibilityDefault = 30 * time.Second
)

// Config configures the SQS transport.
type Config struct {
	// Queue and DeadQueue are the names of the work queue and its DLQ.
	Queue     string
	DeadQueue string
	// VisibilityTimeout is how long a received message stays invisible; the
	// worker extends it while it handles the message (KeepInvisible), so it
	// only bounds how soon a crashed worker's message is delivered again.
	VisibilityTimeout time.Duration
	// Create creates both queues (with the redrive policy) when missing; for
	// emulators and tests. In production Terraform owns them.
	Create bool
	// LogTopic is the SNS topic of the event log (default daybook-log); each
	// consumer group reads an SQS queue <LogTopic>-<group> subscribed to it
	// with raw delivery, redriving to <LogTopic>-<group>-dlq.
	LogTopic string
	// LogTopicARN is the topic's ARN (Terraform's output). Unset, the topic
	// is created (Create) or looked up by name among the account's topics.
	LogTopicARN string
	// AWS is the SDK configuration; zero means the default chain (AWS_REGION,
	// credentials, AWS_ENDPOINT_URL).
	AWS *aws.Config
}

func (c *Config) setDefaults() {
	if c.Queue == "" {
		c.Queue = QueueDefault
	}
	if c.DeadQueue == "" {
		c.DeadQueue = DeadQueueDefault
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = sqsVisibilityDefault
	}
	if c.LogTopic == "" {
		c.LogTopic = LogTopicDefault
	}
}

// Validate reports whether c, with defaults applied, can be used.
func (c Config) Validate() error {
	switch {
	case c.Queue == c.DeadQueue:
		return fmt.Errorf("sqs: queue and dead-letter queue are both %q", c.Queue)
	case c.VisibilityTimeout < 3*time.Second || c.VisibilityTimeout > 12*time.Hour:
		return fmt.Errorf("sqs: visibility timeout %v: must be within 3s..12h", c.VisibilityTimeout)
	}
	return nil
}

// Queues are the SQS work queue, its
// dead-letter queue, and the clients to reach them.
type Queues struct {
	cfg     Config
	send    aws.Config // short HTTP timeout: publishes, attributes, visibility
	receive aws.Config // long-poll receives
	client  *awssqs.Client
	// receiver long-polls: its HTTP timeout exceeds sqsWaitTime.
	receiver *awssqs.Client
	sns      *awssns.Client
	// visibility is VisibilityTimeout in the seconds SQS takes.
	visibility int32
	queueURL   string
	deadURL    string
	closeIdle  []func()
}

// Open connects to SQS and resolves both queues (creating them first when
// cfg.Create is set). It fails when a queue does not exist, naming it.
func Open(ctx context.Context, cfg Config) (*Queues, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base := cfg.AWS
	if base == nil {
		loaded, err := awsconfig.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("sqs: aws config: %w", err)
		}
		base = &loaded
	}
	s := &Queues{cfg: cfg, visibility: int32(cfg.VisibilityTimeout / time.Second)} //nolint:gosec // G115: Validate bounds it to 12h
	s.send = s.withTimeout(*base, sqsCallTimeout)
	s.receive = s.withTimeout(*base, sqsReceiveTimeout)
	s.client = awssqs.NewFromConfig(s.send)
	s.receiver = awssqs.NewFromConfig(s.receive)
	s.sns = awssns.NewFromConfig(s.send)
	if cfg.Create {
		if err := s.create(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	var err error
	if s.queueURL, err = s.url(ctx, cfg.Queue); err != nil {
		s.Close()
		return nil, err
	}
	if s.deadURL, err = s.url(ctx, cfg.DeadQueue); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// withTimeout gives cfg an HTTP client of its own with an overall timeout,
// whose idle connections Close closes.
func (s *Queues) withTimeout(cfg aws.Config, timeout time.Duration) aws.Config {
	s.closeIdle = append(s.closeIdle, awstransport.Own(&cfg, timeout))
	return cfg
}

// Close releases idle connections.
func (s *Queues) Close() {
	for _, f := range s.closeIdle {
		f()
	}
}

// Queue is the work queue's name (the topic publishers and subscribers use).
func (s *Queues) Queue() string { return s.cfg.Queue }

// DeadQueue is the dead-letter queue's name.
func (s *Queues) DeadQueue() string { return s.cfg.DeadQueue }

func (s *Queues) url(ctx context.Context, name string) (string, error) {
	out, err := s.client.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
	var missing *types.QueueDoesNotExist
	if errors.As(err, &missing) {
		return "", fmt.Errorf("sqs queue %q does not exist: create it with terraform/ (or set DAYBOOK_SQS_CREATE_QUEUES=true against an emulator)", name)
	}
	if err != nil {
		return "", fmt.Errorf("sqs queue %q: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// create makes the work queue and its DLQ.
func (s *Queues) create(ctx context.Context) error {
	_, err := s.createPair(ctx, s.cfg.Queue, s.cfg.DeadQueue)
	return err
}

// createPair makes the DLQ dead, then queue redriving to it after
// MaxReceiveCount receives. It returns queue's ARN. CreateQueue is
// idempotent for equal attributes.
func (s *Queues) createPair(ctx context.Context, queue, dead string) (string, error) {
	visibility := strconv.Itoa(int(s.cfg.VisibilityTimeout / time.Second))
	deadOut, err := s.client.CreateQueue(ctx, &awssqs.CreateQueueInput{
		QueueName:  aws.String(dead),
		Attributes: map[string]string{"MessageRetentionPeriod": "1209600", "VisibilityTimeout": visibility},
	})
	if err != nil {
		return "", fmt.Errorf("create sqs queue %q: %w", dead, err)
	}
	deadARN, err := s.arn(ctx, aws.ToString(deadOut.QueueUrl))
	if err != nil {
		return "", err
	}
	redrive, _ := json.Marshal(map[string]string{
		"deadLetterTargetArn": deadARN,
		"maxReceiveCount":     strconv.Itoa(MaxReceiveCount),
	})
	out, err := s.client.CreateQueue(ctx, &awssqs.CreateQueueInput{
		QueueName: aws.String(queue), Attributes: map[string]string{"RedrivePolicy": string(redrive), "VisibilityTimeout": visibility},
	})
	if err != nil {
		return "", fmt.Errorf("create sqs queue %q: %w", queue, err)
	}
	return s.arn(ctx, aws.ToString(out.QueueUrl))
}

// setAttributes sets attributes of the queue at url.
func (s *Queues) setAttributes(ctx context.Context, url string, attrs map[string]string) error {
	if _, err := s.client.SetQueueAttributes(ctx, &awssqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: attrs}); err != nil {
		return fmt.Errorf("set attributes of sqs queue %s: %w", url, err)
	}
	return nil
}

// arn is the ARN of the queue at url.
func (s *Queues) arn(ctx context.Context, url string) (string, error) {
	attrs, err := s.client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("sqs queue %s arn: %w", url, err)
	}
	return attrs.Attributes[string(types.QueueAttributeNameQueueArn)], nil
}

// Ready checks that the work queue answers.
func (s *Queues) Ready(ctx context.Context) error {
	_, err := s.depth(ctx, s.queueURL)
	return err
}

// Depth is the work queue's messages waiting plus those in flight
// (ApproximateNumberOfMessages + ApproximateNumberOfMessagesNotVisible).
func (s *Queues) Depth(ctx context.Context) (int64, error) { return s.depth(ctx, s.queueURL) }

// DeadDepth is the same for the dead-letter queue.
func (s *Queues) DeadDepth(ctx context.Context) (int64, error) { return s.depth(ctx, s.deadURL) }

func (s *Queues) depth(ctx context.Context, url string) (int64, error) {
	out, err := s.client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, fmt.Errorf("sqs attributes of %s: %w", url, err)
	}
	var total int64
	for _, name := range []types.QueueAttributeName{
		types.QueueAttributeNameApproximateNumberOfMessages,
		types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
	} {
		n, err := strconv.ParseInt(out.Attributes[string(name)], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("sqs attribute %s of %s: %w", name, url, err)
		}
		total += n
	}
	return total, nil
}

// NewPublisher publishes to the queues by name (the topic is the queue name).
// It never creates queues: a missing queue is an error, not a new empty queue.
func (s *Queues) NewPublisher(logger watermill.LoggerAdapter) (message.Publisher, error) {
	if logger == nil {
		logger = watermill.NopLogger{} // watermill-aws's publisher does not default it
	}
	pub, err := wmsqs.NewPublisher(wmsqs.PublisherConfig{
		AWSConfig:                   s.send,
		DoNotCreateQueueIfNotExists: true,
		Marshaler:                   sqsMarshaler{},
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("sqs publisher: %w", err)
	}
	return pub, nil
}

// NewSubscriber consumes queue (the work queue, a log group's queue or a
// DLQ) with workers receive loops, each receiving up to ten messages a call,
// with at most ten per worker in hand; acked messages are deleted in batches
// (see batchSubscriber).
func (s *Queues) NewSubscriber(queue string, workers int, logger watermill.LoggerAdapter) (message.Subscriber, error) {
	url, err := s.url(context.Background(), queue)
	if err != nil {
		return nil, err
	}
	sub, err := newBatchSubscriber(s.receiver, s.client, batchConfig{
		Queue: queue, QueueURL: url, Workers: workers,
		VisibilitySeconds: s.visibility,
		WaitSeconds:       int32(sqsWaitTime / time.Second),
		ReconnectSleep:    sqsReconnectSleep,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("sqs subscriber %s: %w", queue, err)
	}
	return sub, nil
}

// KeepInvisible extends the visibility timeout of a received message every
// third of it until stop is called, so that a message handled for longer than
// the timeout (retries with backoff, a pause while Postgres is down) is not
// delivered to a second consumer meanwhile, nor counted as a receive towards
// the redrive. Messages that did not come from SQS are left alone.
func (s *Queues) KeepInvisible(msg *message.Message, onError func(error)) (stop func()) {
	handle, url, ok := delivery(msg)
	if !ok {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(s.cfg.VisibilityTimeout / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), sqsCallTimeout)
			_, err := s.client.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(url), ReceiptHandle: aws.String(handle),
				VisibilityTimeout: s.visibility,
			})
			cancel()
			if err != nil && onError != nil {
				onError(err)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// delivery is the receipt handle and queue URL of a message received from
// SQS; ok is false for a message from elsewhere.
func delivery(msg *message.Message) (handle, url string, ok bool) {
	handle, url = msg.Metadata.Get(MetaReceiptHandle), msg.Metadata.Get(MetaQueueURL)
	return handle, url, handle != "" && url != ""
}

// MakeVisible ends the invisibility of a received message that the consumer
// gives back, so that it is delivered again at once rather than after the
// visibility timeout.
func (s *Queues) MakeVisible(msg *message.Message) error {
	handle, url, ok := delivery(msg)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), sqsCallTimeout)
	defer cancel()
	if _, err := s.client.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(url), ReceiptHandle: aws.String(handle), VisibilityTimeout: 0,
	}); err != nil {
		return fmt.Errorf("make sqs message visible: %w", err)
	}
	return nil
}

// sqsMarshaler writes the SQS layout.
type sqsMarshaler struct{}

// Marshal implements wmsqs.Marshaler.
func (sqsMarshaler) Marshal(msg *message.Message) (*types.Message, error) {
	return &types.Message{
		Body: aws.String(string(msg.Payload)),
		MessageAttributes: map[string]types.MessageAttributeValue{
			sqsAttrUUID:     {DataType: aws.String("String"), StringValue: aws.String(msg.UUID)},
			sqsAttrMetadata: {DataType: aws.String("String"), StringValue: aws.String(encodeMetadata(msg.Metadata))},
		},
	}, nil
}

// encodeMetadata is msg's metadata as a JSON object, without the keys that
// describe one SQS delivery (MetaPrefix).
func encodeMetadata(metadata message.Metadata) string {
	md := make(map[string]string, len(metadata))
	for k, v := range metadata {
		if !strings.HasPrefix(k, MetaPrefix) {
			md[k] = v
		}
	}
	encoded, _ := json.Marshal(md) // a map of strings always encodes
	return string(encoded)
}

// decode reads the SQS layout of a message received from the queue at
// queueURL. It cannot fail: a subscriber that stopped or skipped on a
// malformed message would leave it to be received again until SQS redrives
// it, so a malformed message becomes one flagged with
// transport.MetaDecodeError, which the handler dead-letters at once. It
// records the delivery (receipt handle, queue URL, receive count) in
// metadata for KeepInvisible, MakeVisible and dead letters.
func decode(m *types.Message, queueURL string) *message.Message {
	id, problem := "", ""
	if attr, ok := m.MessageAttributes[sqsAttrUUID]; ok && attr.StringValue != nil {
		id = *attr.StringValue
	}
	if id == "" {
		// Not sent by Daybook (or by hand): the SQS message id is stable across redeliveries.
		id = aws.ToString(m.MessageId)
		if id == "" {
			id = watermill.NewUUID()
		}
	}
	msg := message.NewMessage(id, []byte(aws.ToString(m.Body)))
	if attr, ok := m.MessageAttributes[sqsAttrMetadata]; ok && attr.StringValue != nil {
		md := map[string]string{}
		if err := json.Unmarshal([]byte(*attr.StringValue), &md); err != nil {
			problem = "sqs message metadata is not a JSON object of strings"
		}
		for k, v := range md {
			msg.Metadata.Set(k, v)
		}
	}
	if m.Body == nil {
		problem = "sqs message has no body"
	}
	if problem != "" {
		msg.Metadata.Set(transport.MetaDecodeError, problem)
	}
	msg.Metadata.Set(MetaReceiptHandle, aws.ToString(m.ReceiptHandle))
	msg.Metadata.Set(MetaQueueURL, queueURL)
	n := m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]
	if n != "" {
		msg.Metadata.Set(MetaReceiveCount, n)
	}
	transport.SetFirstDelivery(msg, n == "1")
	return msg
}
