package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/ingest"
)

// payloadOutput writes the archived payload as it lies in the archive, byte
// for byte: re-encoding it could change how its numbers or strings read.
type payloadOutput struct {
	Body func(huma.Context)
}

func (s *Server) registerPayload() {
	register(s, huma.Operation{
		Security:    requires(apikey.ScopeEventsRead),
		OperationID: "getEventPayload", Method: http.MethodGet, Path: "/events/{id}/payload", Tags: []string{"Ingestion"},
		Summary: "The event's payload, read back from the archive",
		Description: "The `payload` object of the event as the worker archived it when it completed the event, " +
			"checked against the SHA-256 recorded with it. 404 when the event is unknown, not COMPLETED yet, " +
			"or was completed before payloads were archived in segments; 500 when its segment is missing or " +
			"does not match (never other bytes); 503 when the archive cannot be read now.",
		Errors: []int{404, 422, 500, 503},
		Responses: map[string]*huma.Response{"200": {
			Description: "The payload object",
			Content: map[string]*huma.MediaType{"application/json": {Schema: &huma.Schema{
				Type: huma.TypeObject, AdditionalProperties: true,
			}}},
		}},
	}, s.getPayload)
}

func (s *Server) getPayload(ctx context.Context, in *eventIDInput) (*payloadOutput, error) {
	id, err := uuid.Parse(in.ID)
	if err != nil {
		return nil, huma.Error422UnprocessableEntity("id must be a UUID", err)
	}
	rec, err := s.deps.Events.Get(ctx, id)
	switch {
	case errors.Is(err, ingest.ErrNotFound):
		return nil, huma.Error404NotFound("no event with id " + id.String())
	case err != nil:
		return nil, unavailable("cannot read the event now", err)
	}
	if rec.Archive != nil && s.deps.Archive == nil {
		return nil, retryAfter(huma.Error503ServiceUnavailable("this server has no archive to read payloads from"), time.Second)
	}
	e, err := ingest.ReadArchived(ctx, s.deps.Archive, rec)
	switch {
	case err == nil:
		payload := e.Payload
		return &payloadOutput{Body: func(hctx huma.Context) {
			hctx.SetHeader("Content-Type", "application/json")
			hctx.SetStatus(http.StatusOK)
			_, _ = hctx.BodyWriter().Write(payload)
		}}, nil
	case errors.Is(err, ingest.ErrNotArchived):
		return nil, huma.Error404NotFound(err.Error())
	case errors.Is(err, archive.ErrNotFound):
		// The details (the store's own error) go to the log, not to the client.
		s.deps.Logger.ErrorContext(ctx, "archived payload lost", "event", id, "segment", rec.Archive.Segment, "error", err)
		return nil, huma.Error500InternalServerError("the segment holding the payload of event " + id.String() + " is missing from the archive")
	case errors.Is(err, archive.ErrCorrupt):
		s.deps.Logger.ErrorContext(ctx, "archived payload corrupt", "event", id, "segment", rec.Archive.Segment, "error", err)
		return nil, huma.Error500InternalServerError("the archived bytes of event " + id.String() + " do not match the SHA-256 recorded with them")
	default:
		s.deps.Logger.WarnContext(ctx, "archive unreadable", "event", id, "segment", rec.Archive.Segment, "error", err)
		return nil, retryAfter(huma.Error503ServiceUnavailable("cannot read the archive now"), time.Second)
	}
}
