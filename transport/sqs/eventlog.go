package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill"
	wmsns "github.com/ThreeDotsLabs/watermill-aws/sns"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
)

// logTopic resolves the event log's SNS topic ARN: the configured one, the
// one created (Create), or the account's topic of that name.
func (s *Queues) logTopic(ctx context.Context) (string, error) {
	if s.cfg.LogTopicARN != "" {
		return s.cfg.LogTopicARN, nil
	}
	if s.cfg.Create {
		out, err := s.sns.CreateTopic(ctx, &awssns.CreateTopicInput{Name: aws.String(s.cfg.LogTopic)})
		if err != nil {
			return "", fmt.Errorf("create sns topic %q: %w", s.cfg.LogTopic, err)
		}
		return aws.ToString(out.TopicArn), nil
	}
	pages := awssns.NewListTopicsPaginator(s.sns, &awssns.ListTopicsInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return "", fmt.Errorf("list sns topics: %w", err)
		}
		for _, t := range page.Topics {
			if arn := aws.ToString(t.TopicArn); strings.HasSuffix(arn, ":"+s.cfg.LogTopic) {
				return arn, nil
			}
		}
	}
	return "", fmt.Errorf("sns topic %q does not exist: create it with terraform/ (or set DAYBOOK_SQS_CREATE_QUEUES=true against an emulator)", s.cfg.LogTopic)
}

// logQueue is consumer group's queue of the event log.
func (s *Queues) logQueue(group string) string { return s.cfg.LogTopic + "-" + group }

// logDeadQueue is where group's queue redrives to: Terraform names it alike.
func (s *Queues) logDeadQueue(group string) string { return s.logQueue(group) + "-dlq" }

// subscribeLogQueue makes group's queue and its DLQ, and subscribes the queue
// to the topic with raw delivery (the SNS envelope would hide the message
// attributes the unmarshaler reads). For emulators and tests; in production
// Terraform does the same.
func (s *Queues) subscribeLogQueue(ctx context.Context, topicARN, group string) error {
	queue := s.logQueue(group)
	// The queue's ARN is known only once it exists: create it, then set the
	// policy that lets the topic send to it.
	arn, err := s.createPair(ctx, queue, s.logDeadQueue(group))
	if err != nil {
		return err
	}
	policy, _ := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []map[string]any{{
			"Effect": "Allow", "Principal": map[string]string{"Service": "sns.amazonaws.com"},
			"Action": "sqs:SendMessage", "Resource": arn,
			"Condition": map[string]any{"ArnEquals": map[string]string{"aws:SourceArn": topicARN}},
		}},
	})
	url, err := s.url(ctx, queue)
	if err != nil {
		return err
	}
	if err := s.setAttributes(ctx, url, map[string]string{"Policy": string(policy)}); err != nil {
		return err
	}
	if _, err := s.sns.Subscribe(ctx, &awssns.SubscribeInput{
		TopicArn: aws.String(topicARN), Protocol: aws.String("sqs"), Endpoint: aws.String(arn),
		Attributes: map[string]string{"RawMessageDelivery": "true"}, ReturnSubscriptionArn: true,
	}); err != nil {
		return fmt.Errorf("subscribe sqs queue %q to sns topic %s: %w", queue, topicARN, err)
	}
	return nil
}

// newLogPublisher publishes to the topic ARN whatever topic name it is given
// (the relay's daybook.log, a replay's prefixed name).
func (s *Queues) newLogPublisher(topicARN string, logger watermill.LoggerAdapter) (message.Publisher, error) {
	pub, err := wmsns.NewPublisher(wmsns.PublisherConfig{
		AWSConfig:                   s.send,
		DoNotCreateTopicIfNotExists: true,
		TopicResolver:               fixedTopic(topicARN),
		Marshaler:                   snsMarshaler{},
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("sns publisher: %w", err)
	}
	return pub, nil
}

// fixedTopic resolves every topic name to one ARN.
type fixedTopic wmsns.TopicArn

// ResolveTopic implements wmsns.TopicResolver.
func (f fixedTopic) ResolveTopic(context.Context, string) (wmsns.TopicArn, error) {
	if f == "" {
		return "", errors.New("sns topic arn unknown")
	}
	return wmsns.TopicArn(f), nil
}

// snsMarshaler writes the SQS layout onto SNS: with raw delivery the
// subscribed queues receive the same body and attributes as the work queue,
// and decode reads both.
type snsMarshaler struct{}

// Marshal implements wmsns.Marshaler.
func (snsMarshaler) Marshal(topicARN wmsns.TopicArn, msg *message.Message) *awssns.PublishInput {
	return &awssns.PublishInput{
		TargetArn: aws.String(string(topicARN)), Message: aws.String(string(msg.Payload)),
		MessageAttributes: map[string]snstypes.MessageAttributeValue{
			sqsAttrUUID:     {DataType: aws.String("String"), StringValue: aws.String(msg.UUID)},
			sqsAttrMetadata: {DataType: aws.String("String"), StringValue: aws.String(encodeMetadata(msg.Metadata))},
		},
	}
}
