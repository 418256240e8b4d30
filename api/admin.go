package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/replay"
)

var adminSecurity = requires(apikey.ScopeAdmin)

type replayOutput struct {
	Body EventOut
}

// DeadLetterOut is one dead-lettered message.
type DeadLetterOut struct {
	ID          string            `json:"id"`
	MessageUUID string            `json:"message_uuid"`
	EventID     *string           `json:"event_id" nullable:"true" doc:"Null when the message could not be decoded."`
	Topic       string            `json:"topic"`
	Reason      string            `json:"reason"`
	Payload     string            `json:"payload" doc:"The message body as it was (invalid UTF-8 replaced)."`
	Metadata    map[string]string `json:"metadata"`
	CreatedAt   time.Time         `json:"created_at"`
	ReplayedAt  *time.Time        `json:"replayed_at" nullable:"true"`
	ReplayCount int               `json:"replay_count"`
}

func deadLetterOut(l deadletter.Letter) DeadLetterOut {
	out := DeadLetterOut{
		ID: l.ID.String(), MessageUUID: l.MessageUUID, Topic: l.Topic, Reason: l.Reason,
		Payload: strings.ToValidUTF8(string(l.Payload), "\uFFFD"), Metadata: l.Metadata,
		CreatedAt: l.CreatedAt, ReplayedAt: l.ReplayedAt, ReplayCount: l.ReplayCount,
	}
	if l.EventID != nil {
		id := l.EventID.String()
		out.EventID = &id
	}
	return out
}

type listDLQInput struct {
	All    bool   `query:"all" doc:"Include letters already replayed."`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50"`
	Cursor string `query:"cursor"`
}

type listDLQOutput struct {
	Body struct {
		Items      []DeadLetterOut `json:"items"`
		NextCursor *string         `json:"next_cursor" nullable:"true"`
	}
}

type replayDLQInput struct {
	Body struct {
		IDs []string `json:"ids,omitempty" maxItems:"1000" doc:"Dead letters to replay."`
		All bool     `json:"all,omitempty" doc:"Replay every waiting dead letter."`
	}
}

type replayFailure struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

type replayDLQOutput struct {
	Body struct {
		Replayed []string        `json:"replayed"`
		Failed   []replayFailure `json:"failed"`
	}
}

func (s *Server) registerAdmin() {
	register(s, huma.Operation{
		OperationID: "replayEvent", Method: http.MethodPost, Path: "/admin/replay/{id}", Tags: []string{"Admin"},
		Summary:       "Put a FAILED, dead-lettered or stuck event back on the queue",
		DefaultStatus: http.StatusAccepted, Errors: []int{401, 404, 409, 422, 503}, Security: adminSecurity,
	}, s.replayEvent)
	register(s, huma.Operation{
		OperationID: "listDeadLetters", Method: http.MethodGet, Path: "/admin/dlq", Tags: []string{"Admin"},
		Summary: "Dead letters waiting for a replay", Errors: []int{401, 422}, Security: adminSecurity,
	}, s.listDeadLetters)
	register(s, huma.Operation{
		OperationID: "replayDeadLetters", Method: http.MethodPost, Path: "/admin/dlq/replay", Tags: []string{"Admin"},
		Summary:       "Replay dead letters by id, or all of them",
		DefaultStatus: http.StatusAccepted, Errors: []int{401, 422, 503}, Security: adminSecurity,
	}, s.replayDeadLetters)
}

func (s *Server) replayEvent(ctx context.Context, in *eventIDInput) (*replayOutput, error) {
	id, err := uuid.Parse(in.ID)
	if err != nil {
		return nil, huma.Error422UnprocessableEntity("id must be a UUID", err)
	}
	rec, err := s.deps.Replayer.Event(ctx, id)
	switch {
	case errors.Is(err, ingest.ErrNotFound):
		return nil, huma.Error404NotFound("no stored event with id " + id.String())
	case errors.Is(err, ingest.ErrAlreadyCompleted):
		return nil, huma.Error409Conflict("the event is already COMPLETED; it is never processed twice")
	case errors.Is(err, ingest.ErrTransition):
		return nil, huma.Error409Conflict("the event changed state while replaying; look again", err)
	case err != nil:
		return nil, unavailable("cannot replay now", err)
	}
	return &replayOutput{Body: eventOut(rec)}, nil
}

func (s *Server) listDeadLetters(ctx context.Context, in *listDLQInput) (*listDLQOutput, error) {
	after, err := decodeCursor(in.Cursor)
	if err != nil {
		return nil, err
	}
	letters, more, err := s.deps.Dead.List(ctx, deadletter.ListParams{Waiting: !in.All, After: after, Limit: in.Limit})
	if err != nil {
		return nil, unavailable("cannot list dead letters now", err)
	}
	out := &listDLQOutput{}
	out.Body.Items = make([]DeadLetterOut, len(letters))
	for i, l := range letters {
		out.Body.Items[i] = deadLetterOut(l)
	}
	if more {
		out.Body.NextCursor = encodeCursor(letters[len(letters)-1].ID)
	}
	return out, nil
}

func (s *Server) replayDeadLetters(ctx context.Context, in *replayDLQInput) (*replayDLQOutput, error) {
	if in.Body.All == (len(in.Body.IDs) > 0) {
		return nil, huma.Error422UnprocessableEntity("give either ids or all=true")
	}
	out := &replayDLQOutput{}
	out.Body.Replayed, out.Body.Failed = []string{}, []replayFailure{}
	if in.Body.All {
		done, failed, err := s.deps.Replayer.AllDeadLetters(ctx)
		if err != nil {
			return nil, unavailable("cannot replay now", err)
		}
		for _, id := range done {
			out.Body.Replayed = append(out.Body.Replayed, id.String())
		}
		for id, err := range failed {
			out.Body.Failed = append(out.Body.Failed, replayFailure{ID: id.String(), Error: err.Error()})
		}
		return out, nil
	}
	for _, raw := range in.Body.IDs {
		id, err := uuid.Parse(raw)
		if err != nil {
			out.Body.Failed = append(out.Body.Failed, replayFailure{ID: raw, Error: "not a UUID"})
			continue
		}
		if _, err := s.deps.Replayer.DeadLetter(ctx, id); err != nil {
			msg := err.Error()
			switch {
			case errors.Is(err, deadletter.ErrNotFound):
				msg = "no such dead letter"
			case errors.Is(err, replay.ErrAlreadyReplayed):
				msg = "already replayed"
			case errors.Is(err, ingest.ErrAlreadyCompleted):
				msg = "its event is already COMPLETED"
			}
			out.Body.Failed = append(out.Body.Failed, replayFailure{ID: raw, Error: msg})
			continue
		}
		out.Body.Replayed = append(out.Body.Replayed, raw)
	}
	return out, nil
}
