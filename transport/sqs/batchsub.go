package sqs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// batchMax is the most messages one ReceiveMessage returns and the most
// entries one batch call (delete, change visibility) takes: SQS's limit.
const batchMax = 10

// batchConfig configures a batchSubscriber.
type batchConfig struct {
	// Queue is the queue's name, the only topic Subscribe takes, and
	// QueueURL its URL.
	Queue    string
	QueueURL string
	// Workers is how many receive loops long-poll the queue, each asking
	// for up to batchMax messages at a time.
	Workers int
	// InFlightMax bounds the messages received and not yet acked or nacked
	// (default Workers × batchMax): a receive never asks for more than the
	// room left, so nothing waits in memory while its visibility runs out.
	InFlightMax int
	// VisibilitySeconds and WaitSeconds are each receive's VisibilityTimeout
	// and long-poll WaitTimeSeconds.
	VisibilitySeconds int32
	WaitSeconds       int32
	// DeleteLinger is how long the deleter waits for more acks to fill a
	// batch once it has one and nothing else is queued (default 2ms): long
	// enough to gather the acks of one received batch, too short to matter
	// to anyone, since a message's handler has already returned.
	DeleteLinger time.Duration
	// CloseWait bounds how long Close waits for the messages handed out to
	// be acked or nacked (default 5s). Those still in hand are then left to
	// their visibility timeout: their handler may yet be running.
	CloseWait time.Duration
	// ReconnectSleep is the pause after a receive failed (default 1s).
	ReconnectSleep time.Duration
}

func (c *batchConfig) setDefaults() {
	if c.InFlightMax == 0 {
		c.InFlightMax = c.Workers * batchMax
	}
	if c.DeleteLinger == 0 {
		c.DeleteLinger = 2 * time.Millisecond
	}
	if c.CloseWait == 0 {
		c.CloseWait = 5 * time.Second
	}
	if c.ReconnectSleep == 0 {
		c.ReconnectSleep = time.Second
	}
}

// Validate reports whether c, with defaults applied, can be used.
func (c batchConfig) Validate() error {
	switch {
	case c.Queue == "" || c.QueueURL == "":
		return errors.New("sqs subscriber: queue name and URL are required")
	case c.Workers <= 0:
		return fmt.Errorf("sqs subscriber of %q: workers %d: must be positive", c.Queue, c.Workers)
	case c.InFlightMax < 1:
		return fmt.Errorf("sqs subscriber of %q: in-flight bound %d: must be positive", c.Queue, c.InFlightMax)
	case c.WaitSeconds < 0 || c.WaitSeconds > 20:
		return fmt.Errorf("sqs subscriber of %q: wait %ds: must be within 0..20s", c.Queue, c.WaitSeconds)
	case c.DeleteLinger < 0 || c.DeleteLinger > 10*time.Millisecond:
		return fmt.Errorf("sqs subscriber of %q: delete linger %v: must be within 0..10ms", c.Queue, c.DeleteLinger)
	}
	return nil
}

// batchSubscriber is a watermill subscriber of one SQS queue that receives up
// to ten messages per call and hands them all out at once, so the router
// handles them concurrently, and deletes the acked ones in batches.
// watermill-aws's subscriber instead holds one message per receive loop and
// deletes each with a call of its own.
//
// A nacked message is left as it is: the transport's middleware has made it
// visible already (MakeVisible), or its visibility timeout brings it back.
// Received messages keep the layout decode gives them, so KeepInvisible and
// MakeVisible find their receipt handle in the metadata.
type batchSubscriber struct {
	receiver *awssqs.Client // long-poll timeout
	client   *awssqs.Client // short timeout: deletes, visibility
	cfg      batchConfig
	logger   watermill.LoggerAdapter

	// closing ends when Close is called: receive loops stop.
	closing     context.Context
	stopReceive context.CancelFunc
	// abandon is closed CloseWait after Close was called: messages still in
	// hand are given up.
	abandon chan struct{}

	mu            sync.Mutex
	closed        bool
	subscriptions sync.WaitGroup
}

var _ message.Subscriber = (*batchSubscriber)(nil)

// newBatchSubscriber builds a subscriber of cfg.Queue: receiver long-polls,
// client deletes and changes visibility.
func newBatchSubscriber(receiver, client *awssqs.Client, cfg batchConfig, logger watermill.LoggerAdapter) (*batchSubscriber, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	closing, stop := context.WithCancel(context.Background())
	return &batchSubscriber{
		receiver: receiver, client: client, cfg: cfg,
		logger:  logger.With(watermill.LogFields{"queue": cfg.Queue}),
		closing: closing, stopReceive: stop, abandon: make(chan struct{}),
	}, nil
}

// Subscribe starts the receive loops; the channel closes once they stopped
// (Close, or ctx ended), every message handed out was settled or given up,
// and the acked ones were deleted. Messages carry a context derived from
// ctx, which ends when the subscription does.
func (b *batchSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if topic != b.cfg.Queue {
		return nil, fmt.Errorf("sqs subscriber of %q: cannot subscribe to %q", b.cfg.Queue, topic)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("sqs subscriber of %q: closed", b.cfg.Queue)
	}
	s := newSubscription(ctx, b)
	b.subscriptions.Add(1)
	go func() {
		defer b.subscriptions.Done()
		s.run()
	}()
	return s.output, nil
}

// Close stops receiving, hands back what was received but not handed out,
// waits up to CloseWait for the messages in hand to be acked or nacked,
// deletes the acked ones, and returns once every subscription ended.
func (b *batchSubscriber) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()

	b.stopReceive()
	giveUp := time.AfterFunc(b.cfg.CloseWait, func() { close(b.abandon) })
	b.subscriptions.Wait()
	giveUp.Stop()
	return nil
}

// receiveInput asks for up to n messages, with the attributes decode reads.
func (b *batchSubscriber) receiveInput(n int32) *awssqs.ReceiveMessageInput {
	return &awssqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(b.cfg.QueueURL),
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
		WaitTimeSeconds:             b.cfg.WaitSeconds,
		MaxNumberOfMessages:         n,
		VisibilityTimeout:           b.cfg.VisibilitySeconds,
	}
}
