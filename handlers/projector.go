package handlers

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/projections"
	"github.com/daybook/daybook/queue"
)

// addProjector consumes daybook.log (group daybook-projections) and feeds
// the asynchronous projections, each event applied once (projection_applied).
// It runs the ingest consumers' chain without dedup; its dead letters are
// replayed onto daybook.log.
func (w *Worker) addProjector(router *message.Router, logger watermill.LoggerAdapter) error {
	logTopic := w.cfg.Topics.Named(eventstore.LogTopic)
	sub, err := queue.NewRedisSubscriber(w.deps.RedisOptions, queue.SubscriberConfig{
		Consumer: fmt.Sprintf("%s-%d-projector", w.cfg.ConsumerName, w.slot), Group: queue.ProjectionsGroup, ClaimIdle: w.cfg.ClaimIdle,
	}, logger)
	if err != nil {
		return err
	}
	// In SQS mode Redis may be down when the worker starts: the projector
	// subscribes once it is back rather than stopping the router.
	eventually := queue.NewEventually(sub, time.Second, func(err error) {
		w.deps.Logger.Warn("projector cannot subscribe to the event log yet; retrying", "error", err)
	})
	chain, err := w.middlewares(logTopic, false)
	if err != nil {
		return err
	}
	h := router.AddConsumerHandler("projector", logTopic, eventually, w.project)
	h.AddMiddleware(chain...)
	return nil
}

// project applies one log event to the asynchronous projections.
func (w *Worker) project(msg *message.Message) error {
	var lm eventstore.LogMessage
	if err := json.Unmarshal(msg.Payload, &lm); err != nil {
		return fmt.Errorf("log message %s: %w", msg.UUID, err)
	}
	id, err := uuid.Parse(lm.EventID)
	if err != nil {
		return fmt.Errorf("log message %s: event id: %w", msg.UUID, err)
	}
	_, err = projections.ApplyDailyTotals(msg.Context(), w.deps.Pool, projections.LogEvent{
		EventID: id, Position: lm.Position, Type: lm.Type, Data: lm.Data, RecordedAt: lm.RecordedAt,
	})
	return err
}
