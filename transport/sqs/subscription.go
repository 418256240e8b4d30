package sqs

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/sync/semaphore"
)

// subscription is one Subscribe of a batchSubscriber: its receive loops,
// the messages they handed out, and the deleter of the acked ones.
type subscription struct {
	b *batchSubscriber
	// receiving ends at Close or when the caller's context ends.
	receiving   context.Context
	stopReceive context.CancelFunc
	unhook      func() bool
	// messages is the context every message carries: the caller's, ended
	// once the subscription is over.
	messages    context.Context
	endMessages context.CancelFunc
	output      chan *message.Message
	// room holds one unit per message that may still be received: taken
	// before a receive asks for it, given back when the message is settled.
	room *semaphore.Weighted
	// acked are the receipt handles of acked messages, for the deleter.
	acked chan string
	// inHand counts messages handed out and not yet settled.
	inHand    sync.WaitGroup
	abandoned atomic.Int64
}

func newSubscription(ctx context.Context, b *batchSubscriber) *subscription {
	s := &subscription{
		b:      b,
		output: make(chan *message.Message),
		room:   semaphore.NewWeighted(int64(b.cfg.InFlightMax)),
		// Each message in hand sends at most once and keeps its room until
		// it did: the deleter never holds up an ack.
		acked: make(chan string, b.cfg.InFlightMax),
	}
	s.receiving, s.stopReceive = context.WithCancel(ctx)
	s.unhook = context.AfterFunc(b.closing, s.stopReceive)
	s.messages, s.endMessages = context.WithCancel(ctx)
	return s
}

// run receives until receiving ends, then waits for the messages in hand,
// the deletes of the acked ones, and closes the output.
func (s *subscription) run() {
	del := deleter{
		client: s.b.client, queueURL: s.b.cfg.QueueURL, linger: s.b.cfg.DeleteLinger,
		callsMax: s.b.cfg.Workers, logger: s.b.logger,
	}
	deleted := make(chan struct{})
	go func() {
		defer close(deleted)
		del.run(s.acked)
	}()
	var loops sync.WaitGroup
	for range s.b.cfg.Workers {
		loops.Go(s.receive)
	}
	loops.Wait()
	s.inHand.Wait() // no Add after the loops ended
	close(s.acked)
	<-deleted
	if n := s.abandoned.Load(); n > 0 {
		s.b.logger.Info("Left sqs messages in hand at close: their visibility timeout brings them back",
			watermill.LogFields{"count": n})
	}
	s.unhook()
	s.stopReceive()
	s.endMessages()
	close(s.output)
}

// receive is one receive loop: it asks for as many messages as there is room
// for, up to batchMax, and hands them all out.
func (s *subscription) receive() {
	for {
		n := s.reserve()
		if n == 0 {
			return
		}
		out, err := s.b.receiver.ReceiveMessage(s.receiving, s.b.receiveInput(n))
		if err != nil {
			s.room.Release(int64(n))
			if s.receiving.Err() != nil {
				return
			}
			s.b.logger.Error("Cannot receive sqs messages", err, nil)
			select {
			case <-s.receiving.Done():
				return
			case <-time.After(s.b.cfg.ReconnectSleep):
			}
			continue
		}
		s.room.Release(int64(n) - int64(len(out.Messages)))
		if !s.handOut(out.Messages) {
			return
		}
	}
}

// reserve takes room for at least one message, waiting for it, and for up to
// batchMax without waiting; 0 once receiving ended.
func (s *subscription) reserve() int32 {
	if err := s.room.Acquire(s.receiving, 1); err != nil {
		return 0
	}
	n := int32(1)
	for n < batchMax && s.room.TryAcquire(1) {
		n++
	}
	return n
}

// handOut sends msgs to the output one by one, each without waiting for the
// previous one's ack. When receiving ends first, the rest are handed back to
// the queue at once, so that another consumer takes them without waiting for
// their visibility timeout; it then reports false.
func (s *subscription) handOut(msgs []types.Message) bool {
	for i := range msgs {
		msg := decode(&msgs[i], s.b.cfg.QueueURL)
		msg.SetContext(s.messages)
		select {
		case s.output <- msg:
			s.inHand.Add(1)
			go s.settle(msg, aws.ToString(msgs[i].ReceiptHandle))
		case <-s.receiving.Done():
			rest := msgs[i:]
			s.handBack(rest)
			s.room.Release(int64(len(rest)))
			return false
		}
	}
	return true
}

// settle waits for msg's ack (queued for deletion) or nack (left as it is:
// visible again by MakeVisible or its timeout), or for Close to give up on
// it, and frees its room.
func (s *subscription) settle(msg *message.Message, handle string) {
	defer s.inHand.Done()
	defer s.room.Release(1)
	select {
	case <-msg.Acked():
		s.acked <- handle
	case <-msg.Nacked():
	case <-s.b.abandon:
		s.abandoned.Add(1)
	}
}

// handBack makes msgs visible again at once.
func (s *subscription) handBack(msgs []types.Message) {
	handles := make([]string, len(msgs))
	for i, m := range msgs {
		handles[i] = aws.ToString(m.ReceiptHandle)
	}
	if err := makeVisibleBatch(s.b.client, s.b.cfg.QueueURL, handles); err != nil {
		s.b.logger.Error("Cannot hand sqs messages back: they return after their visibility timeout", err,
			watermill.LogFields{"count": len(handles)})
	}
}
