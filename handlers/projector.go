package handlers

import (
	"fmt"
	"slices"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/projections"
	"github.com/daybook/daybook/transport"
)

// addProjector consumes the event log (group daybook-projections) and feeds
// the asynchronous projections, each event applied once (projection_applied).
// It runs the ingest consumers' chain without dedup; its dead letters are
// replayed onto the log topic.
func (w *Worker) addProjector(router *message.Router) error {
	c, err := w.deps.Log.Subscribe(transport.ProjectionsGroup, "projector")
	if err != nil {
		return err
	}
	chain, err := w.middlewares(w.cfg.Topics.Named(transport.LogTopic), false)
	if err != nil {
		return err
	}
	h := router.AddConsumerHandler("projector", c.Topic, c.Subscriber, w.project)
	h.AddMiddleware(append(c.Middleware, chain...)...)
	return nil
}

// project applies the events of one log message to the asynchronous
// projections. A message names the types it carries: most (the ingest
// log's) concern no projection and need not be decoded. Each event is
// applied once however often its message comes, so a message that fails
// midway is simply retried.
func (w *Worker) project(msg *message.Message) error {
	if types, named := eventstore.LogEventTypes(msg.Metadata); named && !slices.ContainsFunc(types, projections.DailyTotalsWants) {
		return nil
	}
	events, err := eventstore.DecodeLog(msg.Payload)
	if err != nil {
		return fmt.Errorf("log message %s: %w", msg.UUID, err)
	}
	for _, lm := range events {
		if !projections.DailyTotalsWants(lm.Type) {
			continue
		}
		id, err := uuid.Parse(lm.EventID)
		if err != nil {
			return fmt.Errorf("log message %s: event id: %w", msg.UUID, err)
		}
		if _, err := projections.ApplyDailyTotals(msg.Context(), w.deps.Pool, projections.LogEvent{
			EventID: id, Position: lm.Position, Type: lm.Type, Data: lm.Data, RecordedAt: lm.RecordedAt,
		}); err != nil {
			return err
		}
	}
	return nil
}
