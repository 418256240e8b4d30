package api

import (
	"bytes"
	"errors"
	"io"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/daybook/daybook/pgtext"
	"github.com/daybook/daybook/webhook"
)

// Standard Webhooks headers; an operation that declares headerWebhookSignature
// as a parameter is verified when a webhook secret is configured.
const (
	headerWebhookID        = "webhook-id"
	headerWebhookTimestamp = "webhook-timestamp"
	headerWebhookSignature = "webhook-signature"
)

// humaContext is embedded under this name so that the field does not hide
// the interface's own Context method.
type humaContext = huma.Context

// bodyContext hands the handler the body this middleware already read.
type bodyContext struct {
	humaContext
	body io.Reader
}

func (c bodyContext) BodyReader() io.Reader { return c.body }

// checkBody reads a request body once, before huma decodes it, to verify its
// webhook signature (when the operation takes one and a secret is set) and to
// refuse text that Postgres cannot store: a NUL, an unpaired surrogate or
// bytes that are not UTF-8, anywhere in the JSON. Go's decoder lets all three
// through, and the worker would then fail on every attempt. A body over the
// operation's limit is passed on unread, for huma to answer 413.
func (s *Server) checkBody(ctx huma.Context, next func(huma.Context)) {
	op := ctx.Operation()
	signed := s.cfg.Webhook != nil && takesHeader(op, headerWebhookSignature)
	if op.RequestBody == nil && !signed {
		next(ctx)
		return
	}
	limit := op.MaxBodyBytes
	var buf bytes.Buffer
	reader := ctx.BodyReader()
	if reader == nil {
		reader = http.NoBody
	}
	n, err := io.Copy(&buf, io.LimitReader(reader, limit))
	if err != nil || n == limit {
		// Too large, or unreadable: huma reads the rest and answers.
		next(bodyContext{humaContext: ctx, body: io.MultiReader(&buf, reader)})
		return
	}
	body := buf.Bytes()
	if signed {
		err := s.cfg.Webhook.Verify(webhook.Headers{
			ID: ctx.Header(headerWebhookID), Timestamp: ctx.Header(headerWebhookTimestamp),
			Signature: ctx.Header(headerWebhookSignature),
		}, body)
		if err != nil {
			s.refuse(ctx, http.StatusUnauthorized, "signature", signatureProblem(err))
			return
		}
	}
	// Malformed JSON is huma's to answer (400).
	if p := pgtext.CheckJSON(body); p != nil && p.Reason != pgtext.ReasonMalformed {
		_ = huma.WriteErr(s.api, ctx, http.StatusUnprocessableEntity, "validation failed", &huma.ErrorDetail{
			Location: "body." + p.Path, Message: p.Reason + "; Postgres cannot store it",
		})
		return
	}
	next(bodyContext{humaContext: ctx, body: bytes.NewReader(body)})
}

func takesHeader(op *huma.Operation, name string) bool {
	for _, p := range op.Parameters {
		if p.In == "header" && http.CanonicalHeaderKey(p.Name) == http.CanonicalHeaderKey(name) {
			return true
		}
	}
	return false
}

func signatureProblem(err error) string {
	switch {
	case errors.Is(err, webhook.ErrMissingHeader):
		return "a webhook signature is required: webhook-id, webhook-timestamp and webhook-signature (Standard Webhooks)"
	case errors.Is(err, webhook.ErrTimestampOutOfRange):
		return "webhook-timestamp is more than 5 minutes away from now"
	case errors.Is(err, webhook.ErrBadTimestamp):
		return "webhook-timestamp must be Unix seconds"
	case errors.Is(err, webhook.ErrBadHeader):
		return "a webhook header is malformed or too long (webhook-id at most 255 bytes, webhook-signature at most 4 KiB)"
	}
	return "webhook-signature does not match the body under any configured secret"
}
