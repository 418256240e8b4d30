package sqs_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testmoto"
	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/sqs"
)

func TestOpenSQS_MissingQueueIsNamed(t *testing.T) {
	t.Parallel()
	cfg := testmoto.Config(t, 0)
	cfg.Create = false
	_, err := sqs.Open(t.Context(), cfg)
	require.ErrorContains(t, err, `sqs queue "`+cfg.Queue+`" does not exist`)
}

func TestOpenSQS_CreatesQueueRedrivingToDLQAfterFiveReceives(t *testing.T) {
	t.Parallel()
	cfg := testmoto.Config(t, 7*time.Second)
	s, err := sqs.Open(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	// Opening again over existing queues is fine (CreateQueue is idempotent).
	again, err := sqs.Open(t.Context(), cfg)
	require.NoError(t, err)
	again.Close()

	client := awssqs.NewFromConfig(*cfg.AWS)
	url, err := client.GetQueueUrl(t.Context(), &awssqs.GetQueueUrlInput{QueueName: aws.String(cfg.Queue)})
	require.NoError(t, err)
	attrs, err := client.GetQueueAttributes(t.Context(), &awssqs.GetQueueAttributesInput{
		QueueUrl: url.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	require.NoError(t, err)
	require.Equal(t, "7", attrs.Attributes["VisibilityTimeout"])
	var redrive struct {
		Target string `json:"deadLetterTargetArn"`
		Max    any    `json:"maxReceiveCount"`
	}
	require.NoError(t, json.Unmarshal([]byte(attrs.Attributes["RedrivePolicy"]), &redrive))
	require.Contains(t, redrive.Target, cfg.DeadQueue)
	require.Equal(t, "5", toString(redrive.Max))
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.Itoa(int(x))
	}
	return ""
}

func TestSQS_PublishSubscribeRoundTripsUUIDPayloadAndMetadata(t *testing.T) {
	t.Parallel()
	s := testmoto.Open(t, 0)
	pub, err := s.NewPublisher(nil)
	require.NoError(t, err)

	sent := message.NewMessage("uuid-1", []byte(`{"id":"e-1"}`))
	sent.Metadata.Set("correlation_id", "c-1")
	sent.Metadata.Set(sqs.MetaReceiptHandle, "stale handle of an earlier delivery")
	// More metadata than SQS's 10 attributes: it travels as one attribute.
	for i := range 12 {
		sent.Metadata.Set("k"+strconv.Itoa(i), "v")
	}
	require.NoError(t, pub.Publish(s.Queue(), sent))

	depth, err := s.Depth(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, 1, depth)

	got := receiveOne(t, s, s.Queue())
	require.Equal(t, "uuid-1", got.UUID)
	require.JSONEq(t, `{"id":"e-1"}`, string(got.Payload))
	require.Equal(t, "c-1", got.Metadata.Get("correlation_id"))
	require.Equal(t, "v", got.Metadata.Get("k11"))
	require.Equal(t, "1", got.Metadata.Get(sqs.MetaReceiveCount))
	require.NotEqual(t, "stale handle of an earlier delivery", got.Metadata.Get(sqs.MetaReceiptHandle))
	require.NotEmpty(t, got.Metadata.Get(sqs.MetaReceiptHandle))
	require.Empty(t, got.Metadata.Get(transport.MetaDecodeError))
}

func TestSQS_MalformedMessageIsFlaggedNotDropped(t *testing.T) {
	t.Parallel()
	s := testmoto.Open(t, 0)
	cfg := testmoto.AWSConfig(t)
	client := awssqs.NewFromConfig(cfg)
	url, err := client.GetQueueUrl(t.Context(), &awssqs.GetQueueUrlInput{QueueName: aws.String(s.Queue())})
	require.NoError(t, err)
	out, err := client.SendMessage(t.Context(), &awssqs.SendMessageInput{
		QueueUrl: url.QueueUrl, MessageBody: aws.String("not json"),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"metadata": {DataType: aws.String("String"), StringValue: aws.String("[1,2]")},
		},
	})
	require.NoError(t, err)

	got := receiveOne(t, s, s.Queue())
	require.Equal(t, aws.ToString(out.MessageId), got.UUID, "a message without a uuid attribute keeps its SQS id")
	require.Equal(t, "not json", string(got.Payload))
	require.Equal(t, "sqs message metadata is not a JSON object of strings", got.Metadata.Get(transport.MetaDecodeError))
}

func TestSQS_KeepInvisibleHoldsAMessageBeyondItsVisibilityTimeout(t *testing.T) {
	t.Parallel()
	s := testmoto.Open(t, 3*time.Second)
	pub, err := s.NewPublisher(nil)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(s.Queue(), message.NewMessage("held", []byte("x"))))

	sub, err := s.NewSubscriber(s.Queue(), 1, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	msgs, err := sub.Subscribe(t.Context(), s.Queue())
	require.NoError(t, err)
	held := <-msgs
	stop := s.KeepInvisible(held, func(err error) { t.Errorf("extend visibility: %v", err) })

	// A second consumer polls for three visibility timeouts and must see nothing.
	other, err := s.NewSubscriber(s.Queue(), 1, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	otherMsgs, err := other.Subscribe(t.Context(), s.Queue())
	require.NoError(t, err)
	select {
	case m := <-otherMsgs:
		t.Fatalf("message %s delivered twice while held", m.UUID)
	case <-time.After(9 * time.Second):
	}
	stop()

	// Its consumer goes away without an ack: it comes back once its timeout has passed.
	require.NoError(t, sub.Close())
	select {
	case m := <-otherMsgs:
		require.Equal(t, "held", m.UUID)
		require.Equal(t, "2", m.Metadata.Get(sqs.MetaReceiveCount))
		m.Ack()
	case <-time.After(15 * time.Second):
		t.Fatal("the released message never came back")
	}
}

func TestTransport_PublisherRoutesTheWorkTopicToTheQueueAndTheLogTopicToEveryGroup(t *testing.T) {
	t.Parallel()
	s := testmoto.Open(t, 0)
	topics := transport.Topics{Prefix: "p:"}
	tr, err := sqs.NewTransport(t.Context(), s, sqs.TransportConfig{Topics: topics, Consumers: 1})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close()) })
	// Two groups, each with a queue of its own subscribed to the log topic.
	projections, err := tr.Subscribe("projections", "")
	require.NoError(t, err)
	audit, err := tr.Subscribe("audit", "")
	require.NoError(t, err)
	require.NoError(t, projections.Subscriber.Close())
	require.NoError(t, audit.Subscriber.Close())

	routed := tr.Publisher()
	require.NoError(t, routed.Publish(topics.Events(), message.NewMessage("work", []byte("x"))))
	logged := message.NewMessage("logged", []byte(`{"type":"x"}`))
	logged.Metadata.Set("correlation_id", "c-1")
	require.NoError(t, routed.Publish(topics.Named(transport.LogTopic), logged))
	require.ErrorContains(t, routed.Publish("p:elsewhere", message.NewMessage("other", nil)), `no queue for topic "p:elsewhere"`)

	require.Equal(t, "work", receiveOne(t, s, s.Queue()).UUID)
	// Raw delivery: each group's queue holds the uuid, payload and metadata as sent.
	for _, queue := range []string{projections.Topic, audit.Topic} {
		got := receiveOne(t, s, queue)
		require.Equal(t, "logged", got.UUID, queue)
		require.JSONEq(t, `{"type":"x"}`, string(got.Payload), queue)
		require.Equal(t, "c-1", got.Metadata.Get("correlation_id"), queue)
	}
	// Each group's DLQ is read back into dead_letters, as is the work queue's.
	redriven, err := tr.Redriven()
	require.NoError(t, err)
	replayOnto := map[string]string{}
	for _, c := range redriven {
		replayOnto[c.Topic] = c.ReplayTopic
		require.NoError(t, c.Subscriber.Close())
	}
	require.Equal(t, map[string]string{
		s.DeadQueue():              topics.Events(),
		projections.Topic + "-dlq": topics.Named(transport.LogTopic),
		audit.Topic + "-dlq":       topics.Named(transport.LogTopic),
	}, replayOnto)
}

// receiveOne subscribes to queue, acknowledges the first message and returns it.
func receiveOne(t *testing.T, s *sqs.Queues, name string) *message.Message {
	t.Helper()
	sub, err := s.NewSubscriber(name, 1, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, sub.Close()) }()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, name)
	require.NoError(t, err)
	select {
	case m := <-msgs:
		m.Ack()
		return m
	case <-ctx.Done():
		t.Fatal("no message received")
		return nil
	}
}

func TestOpenSQS_RefusesSettingsThatCannotWork(t *testing.T) {
	t.Parallel()
	for name, change := range map[string]func(*sqs.Config){
		"dlq is the queue":        func(c *sqs.Config) { c.DeadQueue = c.Queue },
		"visibility too short":    func(c *sqs.Config) { c.VisibilityTimeout = time.Second },
		"visibility beyond limit": func(c *sqs.Config) { c.VisibilityTimeout = 13 * time.Hour },
	} {
		cfg := testmoto.Config(t, 0)
		change(&cfg)
		_, err := sqs.Open(t.Context(), cfg)
		require.Error(t, err, name)
		require.ErrorContains(t, err, "sqs: ", name)
	}
}
