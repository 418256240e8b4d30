package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"

	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/pgtext"
	"github.com/daybook/daybook/transport"
)

// EventIn is one event as a client sends it.
type EventIn struct {
	EventID    string         `json:"event_id,omitempty" maxLength:"255" doc:"The client's id for the event; the idempotency key unless X-Idempotency-Key is sent."`
	Source     string         `json:"source" minLength:"1" maxLength:"100" pattern:"^[a-z0-9][a-z0-9_.-]*$" doc:"Where the event comes from; order_updates feeds the orders projection."`
	Type       string         `json:"type" minLength:"1" maxLength:"100"`
	OrderID    string         `json:"order_id,omitempty" maxLength:"100"`
	Payload    map[string]any `json:"payload" doc:"The event's data: any JSON object. Numbers keep their exact text."`
	OccurredAt *time.Time     `json:"occurred_at,omitempty" doc:"When the event happened (RFC 3339); orders use it to ignore late, older updates."`
}

// IngestResult is the answer for one event.
type IngestResult struct {
	ID             string `json:"id" doc:"The event's id (the original's, for a duplicate)."`
	IdempotencyKey string `json:"idempotency_key"`
	Status         string `json:"status" enum:"PENDING,PROCESSING,COMPLETED,FAILED"`
	Duplicate      bool   `json:"duplicate"`
}

// WebhookHeaders are the Standard Webhooks headers (exported: huma reads an
// embedded struct's fields only then). When a webhook secret is set,
// checkBody verifies them before the body is decoded, and webhook-id is the
// idempotency key: a replayed request is always a duplicate.
type WebhookHeaders struct {
	WebhookID        string `header:"webhook-id" maxLength:"255" doc:"Standard Webhooks message id; required, and the idempotency key, when DAYBOOK_WEBHOOK_SECRET is set."`
	WebhookTimestamp string `header:"webhook-timestamp" doc:"Unix seconds; within 5 minutes of the server's clock when signatures are required."`
	WebhookSignature string `header:"webhook-signature" doc:"v1,<base64 HMAC-SHA256 of \"<webhook-id>.<webhook-timestamp>.<body>\">, space-separated when several secrets sign."`
}

type ingestInput struct {
	IdempotencyKey string `header:"X-Idempotency-Key" maxLength:"255" doc:"Deduplication key; defaults to event_id, else the SHA-256 of the canonical body."`
	WebhookHeaders
	RawBody []byte
	Body    EventIn
}

type ingestOutput struct {
	Status int
	Body   IngestResult
}

type batchInput struct {
	WebhookHeaders
	RawBody []byte
	Body    struct {
		Events []EventIn `json:"events" minItems:"1" maxItems:"1000"`
	}
}

type batchOutput struct {
	Body struct {
		Items []IngestResult `json:"items" doc:"One result per event, in order."`
	}
}

// huma answers 413 when a body reaches MaxBodyBytes (it reads at most that
// many bytes and cannot tell "exactly the limit" from "more"), so the limits
// of the contract, which allow a body of exactly their size, are given one
// byte of room.
func (s *Server) registerIngest() {
	register(s, huma.Operation{
		OperationID: "ingestEvent", Method: http.MethodPost, Path: "/events/ingest", Tags: []string{"Ingestion"},
		Summary:       "Accept one event",
		Description:   "202 when the event is durably on the queue; 200 with duplicate=true when its idempotency key was seen before.",
		MaxBodyBytes:  EventBodyBytesMax + 1,
		DefaultStatus: http.StatusAccepted,
		Responses:     s.okForRepeat(IngestResult{}, "OK: a duplicate; the original event's id and status"),
		Errors:        []int{400, 401, 413, 422, 429, 503},
		Security:      requiresIngest(apikey.ScopeEventsWrite),
	}, s.ingestOne)

	register(s, huma.Operation{
		OperationID: "ingestBatch", Method: http.MethodPost, Path: "/events/ingest/batch", Tags: []string{"Ingestion"},
		Summary:      "Accept up to 1,000 events",
		Description:  "One result per event, in order. The batch is validated as a whole; the rate limit counts every event.",
		MaxBodyBytes: BatchBodyBytesMax + 1,
		Errors:       []int{400, 401, 413, 422, 429, 503},
		Security:     requiresIngest(apikey.ScopeEventsWrite),
	}, s.ingestBatch)
}

func (s *Server) ingestOne(ctx context.Context, in *ingestInput) (*ingestOutput, error) {
	var raw struct {
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(in.RawBody, &raw); err != nil {
		return nil, huma.Error400BadRequest("malformed JSON", err)
	}
	header, keyAt, err := s.headerKey(in.IdempotencyKey, in.WebhookID)
	if err != nil {
		return nil, err
	}
	key, err := ingest.IdempotencyKey(header, in.Body.EventID, in.RawBody)
	if err != nil {
		return nil, huma.Error400BadRequest("malformed JSON", err)
	}
	if header == "" {
		keyAt = "body.event_id"
	}
	if errs := byteLimits("body", in.Body, keyAt, key); len(errs) > 0 {
		return nil, huma.Error422UnprocessableEntity("validation failed", errs...)
	}
	adm, ev, err := s.admission(ctx, in.Body, raw.Payload, key)
	if err != nil {
		return nil, err
	}
	res, err := s.deps.Gate.Admit(ctx, adm)
	if err != nil {
		s.deps.Metrics.EventsIngested.WithLabelValues("unavailable").Inc()
		return nil, unavailable("the queue cannot take the event now; nothing was accepted", err)
	}
	out, err := s.result(ctx, ev, res)
	if err != nil {
		return nil, err
	}
	status := http.StatusAccepted
	if out.Duplicate {
		status = http.StatusOK
	}
	return &ingestOutput{Status: status, Body: out}, nil
}

func (s *Server) ingestBatch(ctx context.Context, in *batchInput) (*batchOutput, error) {
	var raw struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(in.RawBody, &raw); err != nil || len(raw.Events) != len(in.Body.Events) {
		return nil, huma.Error400BadRequest("malformed JSON", err)
	}
	adms := make([]transport.Admission, len(in.Body.Events))
	events := make([]ingest.Event, len(in.Body.Events))
	keys := make([]string, len(in.Body.Events))
	var invalid []error
	for i, item := range in.Body.Events {
		at := fmt.Sprintf("body.events[%d]", i)
		header, keyAt := "", at+".event_id"
		if s.cfg.Webhook != nil {
			// A signed batch is one webhook message: its items are keyed by position.
			header, keyAt = in.WebhookID+"/"+strconv.Itoa(i), "header.webhook-id"
		}
		var err error
		if keys[i], err = ingest.IdempotencyKey(header, item.EventID, raw.Events[i]); err != nil {
			return nil, huma.Error400BadRequest("malformed JSON", err)
		}
		invalid = append(invalid, byteLimits(at, item, keyAt, keys[i])...)
	}
	if len(invalid) > 0 {
		return nil, huma.Error422UnprocessableEntity("validation failed", invalid...)
	}
	for i, item := range in.Body.Events {
		if len(raw.Events[i]) > EventBodyBytesMax {
			return nil, huma.Error413RequestEntityTooLarge(fmt.Sprintf("events[%d] is larger than %d bytes", i, EventBodyBytesMax))
		}
		var itemRaw struct {
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(raw.Events[i], &itemRaw); err != nil {
			return nil, huma.Error400BadRequest("malformed JSON", err)
		}
		var err error
		adms[i], events[i], err = s.admission(ctx, item, itemRaw.Payload, keys[i])
		if err != nil {
			return nil, err
		}
	}
	results, err := s.deps.Gate.AdmitBatch(ctx, adms)
	switch {
	case errors.Is(err, transport.ErrBatchOverBurst):
		return nil, huma.Error422UnprocessableEntity("the batch has more events than the client's rate-limit burst allows in one request; send smaller batches")
	case err != nil && !errors.Is(err, transport.ErrEnqueue):
		s.deps.Metrics.EventsIngested.WithLabelValues("unavailable").Add(float64(len(adms)))
		return nil, unavailable("the queue cannot take the events now; nothing was accepted", err)
	case err != nil && (len(results) == 0 || results[0].Outcome == transport.NotAdmitted):
		s.deps.Metrics.EventsIngested.WithLabelValues("unavailable").Add(float64(len(adms)))
		return nil, unavailable("the queue cannot take the events now; nothing was accepted", err)
	}
	out := &batchOutput{}
	out.Body.Items = make([]IngestResult, 0, len(results))
	for i, res := range results {
		if res.Outcome == transport.NotAdmitted {
			// The queue refused from here on; earlier items are accepted. The
			// client retries the whole batch: accepted items come back as duplicates.
			s.deps.Metrics.EventsIngested.WithLabelValues("unavailable").Add(float64(len(results) - i))
			return nil, unavailable(fmt.Sprintf("the queue refused events from index %d on; retry the batch (events before it are deduplicated)", i), err)
		}
		r, err := s.result(ctx, events[i], res)
		if err != nil {
			return nil, err
		}
		out.Body.Items = append(out.Body.Items, r)
	}
	return out, nil
}

// headerKey is the idempotency key that a header gives, and where it came
// from: webhook-id when signatures are required (only signed material may
// name the key, or a captured request could be replayed under a new one),
// else X-Idempotency-Key.
func (s *Server) headerKey(idempotencyKey, webhookID string) (string, string, error) {
	if s.cfg.Webhook == nil {
		return idempotencyKey, "header.X-Idempotency-Key", nil
	}
	if idempotencyKey != "" && idempotencyKey != webhookID {
		return "", "", fieldError("header.X-Idempotency-Key", idempotencyKey,
			"signed requests are deduplicated by webhook-id; leave X-Idempotency-Key out or send the same value")
	}
	return webhookID, "header.webhook-id", nil
}

// byteLimits checks the limits that the worker (ingest.Decode) and the gate
// hold in bytes. huma's maxLength counts characters, so a multi-byte value
// within it would be accepted here, then refused by the gate (a 503 the
// client would retry forever) or dead-lettered by the worker after a 202.
// at locates the event in the request, keyAt where its idempotency key came from.
func byteLimits(at string, in EventIn, keyAt, key string) []error {
	var errs []error
	check := func(location, value string, limit int) {
		if len(value) > limit {
			errs = append(errs, &huma.ErrorDetail{
				Location: location, Message: fmt.Sprintf("expected at most %d bytes of UTF-8", limit), Value: value,
			})
		}
	}
	check(keyAt, key, ingest.IdempotencyKeyLengthMax)
	if reason := pgtext.CheckString(key); reason != "" {
		// A header may carry bytes that are not UTF-8: the store would refuse them.
		errs = append(errs, &huma.ErrorDetail{Location: keyAt, Message: "the idempotency key " + reason})
	}
	check(at+".source", in.Source, ingest.SourceLengthMax)
	check(at+".type", in.Type, ingest.TypeLengthMax)
	check(at+".order_id", in.OrderID, ingest.OrderIDLengthMax)
	return errs
}

// admission turns a validated event into what the gate needs.
func (s *Server) admission(ctx context.Context, in EventIn, payload json.RawMessage, key string) (transport.Admission, ingest.Event, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return transport.Admission{}, ingest.Event{}, fmt.Errorf("new event id: %w", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, payload); err != nil {
		return transport.Admission{}, ingest.Event{}, huma.Error400BadRequest("malformed payload", err)
	}
	ev := ingest.Event{
		ID: id, IdempotencyKey: key, Source: in.Source, Type: in.Type, OrderID: in.OrderID,
		Payload: compact.Bytes(), OccurredAt: in.OccurredAt, ReceivedAt: time.Now().UTC(),
		CorrelationID: observability.CorrelationID(ctx), APIKeyID: keyIDFrom(ctx),
	}
	body, err := ev.Encode()
	if err != nil {
		return transport.Admission{}, ingest.Event{}, err
	}
	metadata := map[string]string{"correlation_id": ev.CorrelationID}
	// traceparent (and tracestate, when the trace has one) make the worker's
	// span a child of this request's: nothing is added while tracing is off.
	// They stay within SQS's 10 message attributes.
	s.deps.Tracing.TextMapPropagator().Inject(ctx, propagation.MapCarrier(metadata))
	md, _ := json.Marshal(metadata)
	return transport.Admission{
		ClientID: clientID(ctx), RatePerSecond: clientRate(ctx), IdempotencyKey: key, EventID: id.String(), MessageUUID: uuid.NewString(),
		Payload: body, MetadataJSON: string(md),
		Pending: map[string]string{
			"idempotency_key": key, "source": ev.Source, "type": ev.Type,
			"received_at": ev.ReceivedAt.Format(time.RFC3339Nano),
		},
	}, ev, nil
}

// result maps the gate's answer for one event to the API's.
func (s *Server) result(ctx context.Context, ev ingest.Event, res transport.Result) (IngestResult, error) {
	switch res.Outcome {
	case transport.Accepted:
		s.deps.Metrics.EventsIngested.WithLabelValues("accepted").Inc()
		return IngestResult{ID: ev.ID.String(), IdempotencyKey: ev.IdempotencyKey, Status: string(ingest.StatusPending)}, nil
	case transport.Duplicate:
		s.deps.Metrics.EventsIngested.WithLabelValues("duplicate").Inc()
		status := ingest.StatusPending
		if id, err := uuid.Parse(res.EventID); err == nil {
			if rec, err := s.deps.Events.Get(ctx, id); err == nil {
				status = rec.Status
			}
		}
		return IngestResult{ID: res.EventID, IdempotencyKey: ev.IdempotencyKey, Status: string(status), Duplicate: true}, nil
	case transport.RateLimited:
		s.deps.Metrics.EventsIngested.WithLabelValues("rate_limited").Inc()
		return IngestResult{}, retryAfter(huma.Error429TooManyRequests("over the client's rate limit"), res.RetryAfter)
	default:
		s.deps.Metrics.EventsIngested.WithLabelValues("unavailable").Inc()
		return IngestResult{}, unavailable("the queue did not take the event", nil)
	}
}
