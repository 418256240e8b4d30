package handlers

import (
	"context"
	"testing"
	"time"

	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/sqs"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/internal/testmoto"
	"github.com/daybook/daybook/logevent"
)

func TestWorkerSQS_ProcessesEachEventOnceAndReadsQueueDepth(t *testing.T) {
	t.Parallel()
	h := newHarness(t, onSQS(0))
	var events []ingest.Event
	for range 8 {
		e := h.newEvent(logevent.SourceOrderUpdates, orderPayload)
		events = append(events, e)
		h.enqueue(e)
	}
	h.enqueue(events[0]) // the same event twice (a client retry after a lost answer)
	depth := h.metrics.QueueDepth.WithLabelValues(transport.EventsTopic)
	h.start()

	for _, e := range events {
		rec := h.waitStatus(e.ID, ingest.StatusCompleted, 30*time.Second)
		require.Equal(t, 1, rec.Attempts)
		require.Equal(t, 1, h.logRows(e.ID))
	}
	require.Eventually(t, func() bool {
		return h.processed("COMPLETED")+h.processed("SKIPPED")+h.processed("REDELIVERED") == 9
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, 8.0, h.processed("COMPLETED"), "the second copy of the event was a no-op")
	require.Eventually(t, func() bool {
		n, err := h.sqs.Depth(context.Background())
		return err == nil && n == 0 && testutil.ToFloat64(depth) == 0
	}, 30*time.Second, 100*time.Millisecond, "every message deleted once acknowledged")
}

func TestWorkerSQS_FailingEventIsDeadLetteredInTheTableAndReplayedThroughSQS(t *testing.T) {
	t.Parallel()
	h := newHarness(t, onSQS(0))
	h.breakArchive()
	h.start()
	e := h.newEvent(logevent.SourceOrderUpdates, orderPayload)
	h.enqueue(e)

	rec := h.waitStatus(e.ID, ingest.StatusFailed, 30*time.Second)
	require.Equal(t, 5, rec.Attempts, "five attempts within one receive")
	require.Eventually(t, func() bool { return h.processed("DEAD_LETTERED") == 1 }, 10*time.Second, 20*time.Millisecond)
	letters, _, err := h.dead.List(context.Background(), deadletter.ListParams{})
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.Equal(t, h.topics.Events(), letters[0].Topic, "replayed onto the logical work topic")
	require.Equal(t, "1", letters[0].Metadata[sqs.MetaReceiveCount], "retried in place: SQS delivered it once")
	require.Eventually(t, func() bool {
		n, err := h.sqs.DeadDepth(context.Background())
		return err == nil && n == 0
	}, 5*time.Second, 100*time.Millisecond, "the poison queue is the table, not SQS's DLQ")

	h.fixArchive()
	_, err = h.replayer().DeadLetter(context.Background(), letters[0].ID)
	require.NoError(t, err)
	rec = h.waitStatus(e.ID, ingest.StatusCompleted, 30*time.Second)
	require.Equal(t, 1, h.logRows(e.ID))
	require.Equal(t, 1, rec.Replays)
}

// A message whose consumers die before acknowledging it five times is moved
// by SQS to its DLQ; the worker moves it on into the dead-letter table, from
// where it is listed and replayed like any other.
func TestWorkerSQS_MessageRedrivenBySQSBecomesAReplayableDeadLetter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, onSQS(0))
	e := h.newEvent(logevent.SourceOrderUpdates, orderPayload)
	h.enqueue(e)

	// Five receives that never acknowledge, as five crashed workers would.
	client := awssqs.NewFromConfig(testmoto.AWSConfig(t))
	url, err := client.GetQueueUrl(t.Context(), &awssqs.GetQueueUrlInput{QueueName: aws.String(h.sqs.Queue())})
	require.NoError(t, err)
	received := 0
	deadline := time.Now().Add(30 * time.Second)
	for received < sqs.MaxReceiveCount && time.Now().Before(deadline) {
		out, err := client.ReceiveMessage(t.Context(), &awssqs.ReceiveMessageInput{
			QueueUrl: url.QueueUrl, VisibilityTimeout: 1, WaitTimeSeconds: 2,
		})
		require.NoError(t, err)
		received += len(out.Messages)
	}
	require.Equal(t, sqs.MaxReceiveCount, received)
	require.Eventually(t, func() bool {
		// SQS moves the message on the receive after its last allowed one.
		_, _ = client.ReceiveMessage(t.Context(), &awssqs.ReceiveMessageInput{QueueUrl: url.QueueUrl, VisibilityTimeout: 1})
		n, err := h.sqs.DeadDepth(context.Background())
		return err == nil && n == 1
	}, 20*time.Second, 500*time.Millisecond, "SQS redrives after maxReceiveCount receives")

	h.start()
	var letter deadletter.Letter
	require.Eventually(t, func() bool {
		letters, _, err := h.dead.List(context.Background(), deadletter.ListParams{})
		if err != nil || len(letters) != 1 {
			return false
		}
		letter = letters[0]
		return true
	}, 30*time.Second, 100*time.Millisecond)
	require.Contains(t, letter.Reason, "redriven by SQS to "+h.sqs.DeadQueue())
	require.Equal(t, e.ID, *letter.EventID)
	require.Eventually(t, func() bool {
		n, err := h.sqs.DeadDepth(context.Background())
		return err == nil && n == 0
	}, 30*time.Second, 100*time.Millisecond, "moved out of SQS's DLQ once recorded")
	require.Eventually(t, func() bool { return testutil.ToFloat64(h.metrics.DLQDepth) == 1 }, 10*time.Second, 50*time.Millisecond,
		"daybook_dlq_depth: the unreplayed letter, nothing left in SQS's DLQ")

	_, err = h.replayer().DeadLetter(context.Background(), letter.ID)
	require.NoError(t, err)
	h.waitStatus(e.ID, ingest.StatusCompleted, 30*time.Second)
	require.Equal(t, 1, h.logRows(e.ID))
	require.Eventually(t, func() bool { return testutil.ToFloat64(h.metrics.DLQDepth) == 0 }, 10*time.Second, 50*time.Millisecond)
}

// While Postgres is down the worker holds what it received and extends its
// visibility: no second delivery, nothing counted towards the redrive, and
// every event completes once on the first attempt when Postgres is back.
func TestWorkerSQS_OutageLongerThanVisibilityTimeoutBurnsNoDelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, onSQS(3*time.Second), throughProxy)
	h.start()
	warm := h.newEvent("clicks", `{"x":0}`)
	h.enqueue(warm)
	h.waitStatus(warm.ID, ingest.StatusCompleted, 30*time.Second)

	h.proxy.Cut()
	var events []ingest.Event
	for range 3 {
		e := h.newEvent("clicks", `{"x":1}`)
		events = append(events, e)
		h.enqueue(e)
	}
	state := h.metrics.CircuitBreakerState.WithLabelValues("postgres")
	require.Eventually(t, func() bool { return testutil.ToFloat64(state) == 1 }, 20*time.Second, 10*time.Millisecond)
	time.Sleep(10 * time.Second) // three visibility timeouts

	h.proxy.Restore()
	for _, e := range events {
		rec := h.waitStatus(e.ID, ingest.StatusCompleted, 30*time.Second)
		require.Equal(t, 1, rec.Attempts, "the outage burned no attempt of event %s", e.ID)
	}
	require.Zero(t, h.processed("DEAD_LETTERED"))
	require.Equal(t, 4.0, h.processed("COMPLETED"))
	require.Zero(t, h.processed("SKIPPED")+h.processed("REDELIVERED"), "no message was delivered twice")
	n, err := h.sqs.DeadDepth(context.Background())
	require.NoError(t, err)
	require.Zero(t, n)
}
