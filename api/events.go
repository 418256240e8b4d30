package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
)

// EventOut is an event and where it stands.
type EventOut struct {
	ID             string    `json:"id"`
	IdempotencyKey string    `json:"idempotency_key"`
	Source         string    `json:"source"`
	Type           string    `json:"type"`
	OrderID        string    `json:"order_id,omitempty"`
	Status         string    `json:"status" enum:"PENDING,PROCESSING,COMPLETED,FAILED"`
	Attempts       int       `json:"attempts"`
	Replays        int       `json:"replays"`
	LastError      *string   `json:"last_error" nullable:"true"`
	APIKeyID       string    `json:"api_key_id,omitempty" doc:"The API key that sent the event."`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

func eventOut(r ingest.Record) EventOut {
	out := EventOut{
		ID: r.ID.String(), IdempotencyKey: r.IdempotencyKey, Source: r.Source, Type: r.Type, OrderID: r.OrderID,
		Status: string(r.Status), Attempts: r.Attempts, Replays: r.Replays, APIKeyID: r.APIKeyID,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
	if r.LastError != "" {
		out.LastError = &r.LastError
	}
	return out
}

type eventIDInput struct {
	ID string `path:"id" format:"uuid"`
}

type eventOutput struct{ Body EventOut }

type listEventsInput struct {
	Status string `query:"status" enum:"PENDING,PROCESSING,COMPLETED,FAILED" doc:"Only events in this status."`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50"`
	Cursor string `query:"cursor" doc:"next_cursor of the previous page."`
}

type listEventsOutput struct {
	Body struct {
		Items      []EventOut `json:"items"`
		NextCursor *string    `json:"next_cursor" nullable:"true"`
	}
}

func (s *Server) registerEvents() {
	register(s, huma.Operation{
		Security:    requires(apikey.ScopeEventsRead),
		OperationID: "getEvent", Method: http.MethodGet, Path: "/events/{id}", Tags: []string{"Ingestion"},
		Summary: "An event and its processing state", Errors: []int{404, 422},
	}, s.getEvent)
	register(s, huma.Operation{
		Security:    requires(apikey.ScopeEventsRead),
		OperationID: "listEvents", Method: http.MethodGet, Path: "/events", Tags: []string{"Ingestion"},
		Summary: "A page of events in arrival order", Errors: []int{422},
	}, s.listEvents)
}

func (s *Server) getEvent(ctx context.Context, in *eventIDInput) (*eventOutput, error) {
	id, err := uuid.Parse(in.ID)
	if err != nil {
		return nil, huma.Error422UnprocessableEntity("id must be a UUID", err)
	}
	rec, err := s.deps.Events.Get(ctx, id)
	if err == nil {
		return &eventOutput{Body: eventOut(rec)}, nil
	}
	if !errors.Is(err, ingest.ErrNotFound) {
		return nil, unavailable("cannot read the event now", err)
	}
	// Dead-lettered before it could ever be stored: the letter is its status,
	// so this answer never contradicts the dead-letter queue.
	letter, err := s.deps.Dead.LatestForEvent(ctx, id)
	switch {
	case err == nil:
		return &eventOutput{Body: deadEventOut(id, letter)}, nil
	case !errors.Is(err, deadletter.ErrNotFound):
		return nil, unavailable("cannot read the event now", err)
	}
	// Accepted but not yet stored by the worker: the gate's pending marker knows it.
	fields, ok, err := s.deps.Gate.Pending(ctx, id.String())
	if err != nil {
		return nil, unavailable("cannot read the event now", err)
	}
	if !ok {
		return nil, huma.Error404NotFound("no event with id " + id.String())
	}
	received, _ := time.Parse(time.RFC3339Nano, fields["received_at"])
	return &eventOutput{Body: EventOut{
		ID: id.String(), IdempotencyKey: fields["idempotency_key"], Source: fields["source"], Type: fields["type"],
		Status: string(ingest.StatusPending), CreatedAt: received, UpdatedAt: received,
	}}, nil
}

// deadEventOut is an event known only by its dead letter: FAILED, with the
// letter's reason and what the message itself says of the event.
func deadEventOut(id uuid.UUID, l deadletter.Letter) EventOut {
	out := EventOut{
		ID: id.String(), Status: string(ingest.StatusFailed),
		CreatedAt: l.CreatedAt, UpdatedAt: l.CreatedAt,
	}
	reason := "dead-lettered before it could be stored: " + l.Reason
	out.LastError = &reason
	if ev, err := ingest.Decode(l.Payload); err == nil {
		out.IdempotencyKey, out.Source, out.Type, out.OrderID = ev.IdempotencyKey, ev.Source, ev.Type, ev.OrderID
		out.APIKeyID, out.CreatedAt = ev.APIKeyID, ev.ReceivedAt
	}
	if l.ReplayedAt != nil {
		// A replay put it back on the queue: it waits there again.
		out.Status, out.UpdatedAt = string(ingest.StatusPending), *l.ReplayedAt
	}
	return out
}

func (s *Server) listEvents(ctx context.Context, in *listEventsInput) (*listEventsOutput, error) {
	after, err := decodeCursor(in.Cursor)
	if err != nil {
		return nil, err
	}
	recs, more, err := s.deps.Events.List(ctx, ingest.ListParams{Status: ingest.Status(in.Status), After: after, Limit: in.Limit})
	if err != nil {
		return nil, unavailable("cannot list events now", err)
	}
	out := &listEventsOutput{}
	out.Body.Items = make([]EventOut, len(recs))
	for i, r := range recs {
		out.Body.Items[i] = eventOut(r)
	}
	if more {
		out.Body.NextCursor = encodeCursor(recs[len(recs)-1].ID)
	}
	return out, nil
}
