package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Bounds of a batch call's retries: a delete that fails for good leaves its
// message to be delivered again, which at-least-once delivery allows.
const (
	batchAttemptsMax = 3
	batchRetryDelay  = 100 * time.Millisecond
)

// deleter deletes acked messages with DeleteMessageBatch. It sends a batch
// as soon as it holds batchMax receipt handles or linger has passed since its
// first, with at most callsMax calls at a time; while they are all busy, acks
// queue up and the next batch fills without waiting.
type deleter struct {
	client   *awssqs.Client
	queueURL string
	linger   time.Duration
	callsMax int
	logger   watermill.LoggerAdapter
}

// run deletes the handles of acked until it is closed, and returns once the
// last delete ended.
func (d deleter) run(acked <-chan string) {
	var calls sync.WaitGroup
	defer calls.Wait()
	busy := make(chan struct{}, d.callsMax)
	for first := range acked {
		busy <- struct{}{}
		batch := d.collect(first, acked)
		calls.Go(func() {
			defer func() { <-busy }()
			if err := deleteBatch(d.client, d.queueURL, batch); err != nil {
				d.logger.Error("Cannot delete acked sqs messages: they will be delivered again", err,
					watermill.LogFields{"count": len(batch)})
			}
		})
	}
}

// collect is first and the handles that follow it, up to batchMax, waiting
// at most linger for them.
func (d deleter) collect(first string, acked <-chan string) []string {
	batch := append(make([]string, 0, batchMax), first)
	linger := time.NewTimer(d.linger)
	defer linger.Stop()
	for len(batch) < batchMax {
		select {
		case h, ok := <-acked:
			if !ok {
				return batch
			}
			batch = append(batch, h)
		case <-linger.C:
			return batch
		}
	}
	return batch
}

// deleteBatch deletes up to batchMax messages by receipt handle.
func deleteBatch(client *awssqs.Client, queueURL string, handles []string) error {
	err := callBatch(handles, func(ctx context.Context, ids, handles []string) ([]types.BatchResultErrorEntry, error) {
		entries := make([]types.DeleteMessageBatchRequestEntry, len(ids))
		for i := range ids {
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(ids[i]), ReceiptHandle: aws.String(handles[i])}
		}
		out, err := client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
		if err != nil {
			return nil, err
		}
		return out.Failed, nil
	})
	if err != nil {
		return fmt.Errorf("delete sqs messages: %w", err)
	}
	return nil
}

// makeVisibleBatch ends the invisibility of up to batchMax received messages.
func makeVisibleBatch(client *awssqs.Client, queueURL string, handles []string) error {
	err := callBatch(handles, func(ctx context.Context, ids, handles []string) ([]types.BatchResultErrorEntry, error) {
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(ids))
		for i := range ids {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{
				Id: aws.String(ids[i]), ReceiptHandle: aws.String(handles[i]), VisibilityTimeout: 0,
			}
		}
		out, err := client.ChangeMessageVisibilityBatch(ctx, &awssqs.ChangeMessageVisibilityBatchInput{
			QueueUrl: aws.String(queueURL), Entries: entries,
		})
		if err != nil {
			return nil, err
		}
		return out.Failed, nil
	})
	if err != nil {
		return fmt.Errorf("make sqs messages visible: %w", err)
	}
	return nil
}

// batchCall sends one batch request of entries ids[i] for handles[i] and
// returns the entries SQS reports failed.
type batchCall func(ctx context.Context, ids, handles []string) ([]types.BatchResultErrorEntry, error)

// callBatch calls call with up to batchMax receipt handles, each entry's id
// its index in handles, and retries up to batchAttemptsMax calls in all the
// entries that failed for a reason other than the request's own (a receipt
// handle that expired will not get better). It reports every entry that
// failed for good. The calls have a context of their own: at close, the
// acked messages must still be deleted.
func callBatch(handles []string, call batchCall) error {
	switch {
	case len(handles) == 0:
		return nil // SQS refuses an empty batch
	case len(handles) > batchMax:
		return fmt.Errorf("%d entries: at most %d per batch", len(handles), batchMax)
	}
	pending := make([]int, len(handles))
	for i := range pending {
		pending[i] = i
	}
	var failed []error
	for attempt := 1; ; attempt++ {
		ids, batch := make([]string, len(pending)), make([]string, len(pending))
		for k, i := range pending {
			ids[k], batch[k] = strconv.Itoa(i), handles[i]
		}
		ctx, cancel := context.WithTimeout(context.Background(), sqsCallTimeout)
		results, err := call(ctx, ids, batch)
		cancel()
		retry, cause := pending, err
		if err == nil {
			retry = nil
			for _, r := range results {
				id := aws.ToString(r.Id)
				i, convErr := strconv.Atoi(id)
				if convErr != nil || i < 0 || i >= len(handles) {
					failed = append(failed, fmt.Errorf("unknown entry %q in the answer", id))
					continue
				}
				entryErr := fmt.Errorf("entry %d: %s: %s", i, aws.ToString(r.Code), aws.ToString(r.Message))
				if r.SenderFault {
					failed = append(failed, entryErr)
					continue
				}
				retry, cause = append(retry, i), entryErr
			}
		}
		if len(retry) == 0 {
			return errors.Join(failed...)
		}
		if attempt == batchAttemptsMax {
			return errors.Join(append(failed, fmt.Errorf("%d of %d entries, %d attempts: %w", len(retry), len(handles), attempt, cause))...)
		}
		time.Sleep(time.Duration(attempt) * batchRetryDelay)
		pending = retry
	}
}
