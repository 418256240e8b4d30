package handlers

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/daybook/daybook/queue"
)

// redrivenConsumers receive from SQS's dead-letter queue: it fills only when
// workers crash or hang on the same message again and again.
const redrivenConsumers = 1

// addSQSConsumers consumes the SQS work queue with Consumers receive loops,
// and moves what SQS redrove to its DLQ into the dead-letter table.
//
// The two dead-letter paths: a message that fails is retried in place with
// backoff and, at its last failure, recorded in dead_letters and deleted from
// SQS (the poison-queue middleware); its receive count stays 1. SQS's redrive
// (maxReceiveCount 5) catches only messages never acknowledged: five
// deliveries whose worker died or hung. keepInvisible prevents a slow but
// live attempt from counting as such. Both end in dead_letters, so
// GET /admin/dlq and `daybook dlq` list and replay them alike.
func (w *Worker) addSQSConsumers(router *message.Router, chain []message.HandlerMiddleware, wmLogger watermill.LoggerAdapter) error {
	sub, err := w.cfg.SQS.NewSubscriber(w.cfg.SQS.Queue(), w.cfg.Consumers, wmLogger)
	if err != nil {
		return err
	}
	h := router.AddConsumerHandler("ingest-sqs", w.cfg.SQS.Queue(), sub, w.handle)
	h.AddMiddleware(append([]message.HandlerMiddleware{w.keepInvisible}, chain...)...)

	deadSub, err := w.cfg.SQS.NewSubscriber(w.cfg.SQS.DeadQueue(), redrivenConsumers, wmLogger)
	if err != nil {
		return err
	}
	mover := router.AddConsumerHandler("sqs-redriven", w.cfg.SQS.DeadQueue(), deadSub, w.moveRedriven)
	mover.AddMiddleware(w.keepInvisible, w.drain.Middleware, correlation, markShutdown, w.breaker.Middleware)
	return nil
}

// keepInvisible keeps an SQS message invisible to other consumers while it is
// handled, however long its retries or a breaker pause take. A message the
// worker gives back (shutting down) is made visible again at once, so
// another worker takes it without waiting for the timeout.
func (w *Worker) keepInvisible(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		stop := w.cfg.SQS.KeepInvisible(msg, func(err error) {
			w.deps.Logger.Warn("extend sqs visibility", "message_uuid", msg.UUID, "error", err)
		})
		out, err := h(msg)
		stop()
		if err != nil {
			if rerr := w.cfg.SQS.MakeVisible(msg); rerr != nil {
				w.deps.Logger.Warn("hand sqs message back", "message_uuid", msg.UUID, "error", rerr)
			}
		}
		return out, err
	}
}

// moveRedriven records a message SQS redrove to its DLQ as a dead letter, to
// be replayed onto the work topic; the delete that follows the ack empties
// SQS's DLQ. Recording is idempotent by message uuid, so a move interrupted
// before the delete is harmless when the message comes back.
func (w *Worker) moveRedriven(msg *message.Message) error {
	reason := fmt.Sprintf("redriven by SQS to %s: delivered %d times without an acknowledgement (worker crashed or hung)",
		w.cfg.SQS.DeadQueue(), queue.SQSMaxReceiveCount)
	_, err := w.recordDeadLetter(msg, w.cfg.Topics.Events(), reason)
	return err
}
