package sqs_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
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

// Bounds of the waits in these tests: they decide how long a failing run
// takes, never whether it fails.
const (
	batchWithin = 20 * time.Second
	batchQuiet  = time.Second
)

func TestSubscriber_ReceivesTenAtATimeAndDeletesAckedMessagesInBatches(t *testing.T) {
	t.Parallel()
	s, calls, _ := openCounted(t, 0)
	probe := newProbe(t, s)
	const n = 25
	sent := publishN(t, s, n, "batch")

	sub, msgs := subscribe(t, s, 2)
	seen := map[string]int{}
	for len(seen) < n {
		m := next(t, msgs)
		seen[m.UUID]++
		m.Ack()
	}
	probe.requireCounts(t, 0, 0) // every message deleted
	require.NoError(t, sub.Close())
	for range msgs {
		t.Fatal("a message was delivered after every one was acked")
	}
	for _, m := range sent {
		require.Equal(t, 1, seen[m.UUID], "message %s", m.UUID)
	}

	got := calls.snapshot()
	require.NotEmpty(t, got.receiveAsked)
	require.EqualValues(t, 10, got.receiveAsked[0], "the first receive of an empty-handed subscriber asks for ten")
	for _, asked := range got.receiveAsked {
		require.LessOrEqual(t, asked, int32(10))
	}
	require.Zero(t, got.ops["DeleteMessage"], "no message is deleted on its own")
	entries := 0
	for _, e := range got.deleteEntries {
		require.LessOrEqual(t, e, 10)
		entries += e
	}
	require.Equal(t, n, entries, "each acked message deleted once: %v", got.deleteEntries)
	// Acks of one received batch arrive together and share a delete call.
	require.LessOrEqual(t, len(got.deleteEntries), n/2, "delete calls per message: %v", got.deleteEntries)
	t.Logf("%d receives asking %v; %d DeleteMessageBatch calls of %v", len(got.receiveAsked), got.receiveAsked,
		len(got.deleteEntries), got.deleteEntries)
}

func TestSubscriber_HoldsAtMostTenMessagesPerWorker(t *testing.T) {
	t.Parallel()
	s := testmoto.Open(t, 0)
	probe := newProbe(t, s)
	publishN(t, s, 12, "bound")

	_, msgs := subscribe(t, s, 1)
	var held []*message.Message
	for range 10 {
		held = append(held, next(t, msgs))
	}
	// SQS shows what the subscriber took: ten received, two left waiting.
	probe.requireCounts(t, 2, 10)
	select {
	case m := <-msgs:
		t.Fatalf("an eleventh message %s was delivered while ten were in hand", m.UUID)
	case <-time.After(batchQuiet):
	}
	visible, inFlight := probe.counts(t)
	require.Equal(t, [2]int{2, 10}, [2]int{visible, inFlight}, "nothing more received while full")

	held[0].Ack() // frees room for one more
	held = append(held[1:], next(t, msgs))
	for _, m := range held {
		m.Ack()
	}
	held = append(held, next(t, msgs))
	held[len(held)-1].Ack()
	probe.requireCounts(t, 0, 0)
}

func TestSubscriber_NackedMessageComesBackWithoutHoldingUpTheRest(t *testing.T) {
	t.Parallel()
	const visibility = 3 * time.Second
	s := testmoto.Open(t, visibility)
	probe := newProbe(t, s)
	sent := publishN(t, s, 5, "nack")

	_, msgs := subscribe(t, s, 1)
	first := next(t, msgs)
	require.Equal(t, "1", first.Metadata.Get(sqs.MetaReceiveCount))
	require.True(t, transport.FirstDelivery(first), "received once: a first delivery")
	first.Nack() // left invisible: it comes back after its visibility timeout
	seen := map[string]int{first.UUID: 1}
	var returned *message.Message
	for returned == nil {
		m := next(t, msgs)
		seen[m.UUID]++
		if m.UUID == first.UUID {
			returned = m
			continue
		}
		require.True(t, transport.FirstDelivery(m), "message %s received once: a first delivery", m.UUID)
		m.Ack()
	}
	require.Len(t, seen, len(sent), "every other message was delivered before the nacked one came back")
	require.Equal(t, "2", returned.Metadata.Get(sqs.MetaReceiveCount), "the nacked message is received a second time")
	require.False(t, transport.FirstDelivery(returned), "received a second time: not a first delivery")
	require.Equal(t, string(first.Payload), string(returned.Payload))
	returned.Ack()
	probe.requireCounts(t, 0, 0)
	for _, m := range sent {
		want := 1
		if m.UUID == first.UUID {
			want = 2
		}
		require.Equal(t, want, seen[m.UUID], "deliveries of %s", m.UUID)
	}
}

// The first-delivery flag follows the receive count, not what the message
// carried in: one republished with a stale flag is not a first delivery
// when received a second time.
func TestSubscriber_StaleFirstDeliveryFlagIsClearedOnRedelivery(t *testing.T) {
	t.Parallel()
	s := testmoto.Open(t, 0)
	probe := newProbe(t, s)
	pub, err := s.NewPublisher(nil)
	require.NoError(t, err)
	stale := message.NewMessage("stale-"+t.Name(), []byte(`{}`))
	transport.SetFirstDelivery(stale, true)
	require.NoError(t, pub.Publish(s.Queue(), stale))

	_, msgs := subscribe(t, s, 1)
	first := next(t, msgs)
	require.Equal(t, "1", first.Metadata.Get(sqs.MetaReceiveCount))
	require.True(t, transport.FirstDelivery(first))
	require.NoError(t, s.MakeVisible(first)) // back at once, not after 30s
	first.Nack()
	again := next(t, msgs)
	require.Equal(t, stale.UUID, again.UUID)
	require.Equal(t, "2", again.Metadata.Get(sqs.MetaReceiveCount))
	require.False(t, transport.FirstDelivery(again), "the stale flag the message carried is cleared")
	again.Ack()
	probe.requireCounts(t, 0, 0)
}

func TestSubscriber_CloseDeletesWhatIsAckedMeanwhileAndHandsBackWhatItHeld(t *testing.T) {
	t.Parallel()
	s := testmoto.Open(t, 0) // 30s: only a hand-back makes a message visible again in time
	probe := newProbe(t, s)
	sent := publishN(t, s, 10, "close")

	sub, msgs := subscribe(t, s, 1)
	acked, nacked := next(t, msgs), next(t, msgs)
	// Ten received in one call: two in hand, eight waiting to be handed out.
	probe.requireCounts(t, 0, 10)

	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while two messages were in hand", err)
	case <-time.After(300 * time.Millisecond):
	}
	acked.Ack()
	require.NoError(t, s.MakeVisible(nacked)) // as the transport's middleware does on a failure
	nacked.Nack()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(batchWithin):
		t.Fatal("Close did not return once the messages in hand were settled")
	}
	for m := range msgs {
		t.Fatalf("message %s delivered after Close", m.UUID)
	}
	visible, inFlight := probe.counts(t)
	require.Equal(t, [2]int{9, 0}, [2]int{visible, inFlight},
		"the acked message deleted before Close returned; the rest visible at once")

	// Nothing is lost: the next subscriber gets the nine others, once each.
	_, again := subscribe(t, s, 1)
	seen := map[string]int{}
	for len(seen) < 9 {
		m := next(t, again)
		seen[m.UUID]++
		require.Equal(t, "2", m.Metadata.Get(sqs.MetaReceiveCount), m.UUID)
		m.Ack()
	}
	probe.requireCounts(t, 0, 0)
	for _, m := range sent {
		want := 1
		if m.UUID == acked.UUID {
			want = 0
		}
		require.Equal(t, want, seen[m.UUID], "deliveries of %s after Close", m.UUID)
	}
}

func TestSubscriber_MalformedMessageInABatchIsFlaggedAndTheRestFlow(t *testing.T) {
	t.Parallel()
	s := testmoto.Open(t, 0)
	probe := newProbe(t, s)
	good := publishN(t, s, 1, "before")
	publishMalformed(t, probe.client, s.Queue())
	good = append(good, publishN(t, s, 1, "after")...)

	_, msgs := subscribe(t, s, 1)
	flagged := map[string]string{}
	for len(flagged) < 3 {
		m := next(t, msgs)
		flagged[m.UUID] = m.Metadata.Get(transport.MetaDecodeError)
		m.Ack()
	}
	for _, m := range good {
		require.Contains(t, flagged, m.UUID)
		require.Empty(t, flagged[m.UUID], "a well-formed message is not flagged")
		delete(flagged, m.UUID)
	}
	for _, problem := range flagged {
		require.Equal(t, "sqs message metadata is not a JSON object of strings", problem)
	}
	probe.requireCounts(t, 0, 0)
}

func TestDeleteBatch_ReportsTheEntrySQSRefusedWithoutRetryAndDeletesTheRest(t *testing.T) {
	t.Parallel()
	s, calls, awsCfg := openCounted(t, 0)
	probe := newProbe(t, s)
	publishN(t, s, 2, "delete")
	var handles []string
	for len(handles) < 2 {
		out, err := probe.client.ReceiveMessage(t.Context(), &awssqs.ReceiveMessageInput{
			QueueUrl: probe.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		})
		require.NoError(t, err)
		for _, m := range out.Messages {
			handles = append(handles, aws.ToString(m.ReceiptHandle))
		}
	}
	handles = []string{handles[0], "not-a-receipt-handle", handles[1]}

	err := sqs.DeleteBatch(awssqs.NewFromConfig(awsCfg), aws.ToString(probe.url), handles)
	require.ErrorContains(t, err, "entry 1: ReceiptHandleIsInvalid")
	require.Equal(t, []int{3}, calls.snapshot().deleteEntries, "one call: a handle SQS refuses is not sent again")
	probe.requireCounts(t, 0, 0)
}

// publishN publishes n messages to s's work queue, in order.
func publishN(t *testing.T, s *sqs.Queues, n int, tag string) []*message.Message {
	t.Helper()
	pub, err := s.NewPublisher(nil)
	require.NoError(t, err)
	out := make([]*message.Message, n)
	for i := range out {
		out[i] = message.NewMessage(fmt.Sprintf("%s-%d-%s", tag, i, t.Name()), fmt.Appendf(nil, `{"n":%d}`, i))
		out[i].Metadata.Set("n", strconv.Itoa(i))
	}
	require.NoError(t, pub.Publish(s.Queue(), out...))
	return out
}

// subscribe is a subscriber of s's work queue with workers receive loops,
// closed when the test ends, and its messages.
func subscribe(t *testing.T, s *sqs.Queues, workers int) (message.Subscriber, <-chan *message.Message) {
	t.Helper()
	sub, err := s.NewSubscriber(s.Queue(), workers, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sub.Close()) })
	msgs, err := sub.Subscribe(t.Context(), s.Queue())
	require.NoError(t, err)
	return sub, msgs
}

// next is the next message delivered.
func next(t *testing.T, msgs <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-msgs:
		require.True(t, ok, "the subscription ended")
		return m
	case <-time.After(batchWithin):
		t.Fatal("no message delivered")
		return nil
	}
}

// probe reads a queue's counts straight from SQS.
type probe struct {
	client *awssqs.Client
	url    *string
}

func newProbe(t *testing.T, s *sqs.Queues) probe {
	t.Helper()
	client := awssqs.NewFromConfig(testmoto.AWSConfig(t))
	out, err := client.GetQueueUrl(t.Context(), &awssqs.GetQueueUrlInput{QueueName: aws.String(s.Queue())})
	require.NoError(t, err)
	return probe{client: client, url: out.QueueUrl}
}

// counts are the queue's ApproximateNumberOfMessages (visible) and
// ApproximateNumberOfMessagesNotVisible (received, neither deleted nor back).
func (p probe) counts(t *testing.T) (visible, inFlight int) {
	t.Helper()
	out, err := p.client.GetQueueAttributes(t.Context(), &awssqs.GetQueueAttributesInput{
		QueueUrl: p.url,
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	require.NoError(t, err)
	visible, err = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	require.NoError(t, err)
	inFlight, err = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	require.NoError(t, err)
	return visible, inFlight
}

// requireCounts requires the counts to become visible and inFlight.
func (p probe) requireCounts(t *testing.T, visible, inFlight int) {
	t.Helper()
	deadline := time.Now().Add(batchWithin)
	for {
		v, f := p.counts(t)
		if v == visible && f == inFlight {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue counts never became %d visible and %d in flight: last %d and %d", visible, inFlight, v, f)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openCounted opens queues of the test's own whose SQS calls go through an
// sqsCalls, as do those of clients built on the AWS configuration returned.
func openCounted(t *testing.T, visibility time.Duration) (*sqs.Queues, *sqsCalls, aws.Config) {
	t.Helper()
	cfg := testmoto.Config(t, visibility)
	awsCfg := *cfg.AWS
	calls := &sqsCalls{inner: awsCfg.HTTPClient, ops: map[string]int{}}
	awsCfg.HTTPClient = calls
	cfg.AWS = &awsCfg
	s, err := sqs.Open(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s, calls, awsCfg
}

// sqsCalls counts the SQS calls sent through it by operation (the JSON
// protocol's X-Amz-Target header), with the messages each receive asked for
// and the entries each DeleteMessageBatch carried: batching, as seen on the
// wire.
type sqsCalls struct {
	inner aws.HTTPClient

	mu            sync.Mutex
	ops           map[string]int
	receiveAsked  []int32
	deleteEntries []int
}

// Do implements aws.HTTPClient.
func (c *sqsCalls) Do(req *http.Request) (*http.Response, error) {
	op, ok := strings.CutPrefix(req.Header.Get("X-Amz-Target"), "AmazonSQS.")
	if !ok {
		return c.inner.Do(req)
	}
	var body struct {
		Entries             []json.RawMessage
		MaxNumberOfMessages int32
	}
	if req.Body != nil && (op == "ReceiveMessage" || op == "DeleteMessageBatch") {
		raw, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, fmt.Errorf("read %s request: %w", op, err)
		}
		_ = req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(raw))
		if err := json.Unmarshal(raw, &body); err != nil {
			return nil, fmt.Errorf("decode %s request: %w", op, err)
		}
	}
	c.mu.Lock()
	c.ops[op]++
	switch op {
	case "ReceiveMessage":
		c.receiveAsked = append(c.receiveAsked, body.MaxNumberOfMessages)
	case "DeleteMessageBatch":
		c.deleteEntries = append(c.deleteEntries, len(body.Entries))
	}
	c.mu.Unlock()
	return c.inner.Do(req)
}

// sqsCallsSeen is a copy of what an sqsCalls counted.
type sqsCallsSeen struct {
	ops           map[string]int
	receiveAsked  []int32
	deleteEntries []int
}

func (c *sqsCalls) snapshot() sqsCallsSeen {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops := make(map[string]int, len(c.ops))
	for k, v := range c.ops {
		ops[k] = v
	}
	return sqsCallsSeen{
		ops: ops, receiveAsked: append([]int32(nil), c.receiveAsked...), deleteEntries: append([]int(nil), c.deleteEntries...),
	}
}
