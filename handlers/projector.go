package handlers

import (
	"encoding/json"
	"fmt"

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

// project applies one log event to the asynchronous projections.
func (w *Worker) project(msg *message.Message) error {
	// Every log message names its type in its metadata: most (the ingest
	// log's) concern no projection and need not be decoded. One without
	// the name is decoded and checked as before.
	if t := msg.Metadata.Get(eventstore.MetaEventType); t != "" && !projections.DailyTotalsWants(t) {
		return nil
	}
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
