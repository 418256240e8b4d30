package handlers

import (
	"errors"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/daybook/daybook/observability"
)

// tracerName is the instrumentation scope of the worker's spans.
const tracerName = "github.com/daybook/daybook/handlers"

// outcomeKey says how handling a message ended, on its consumer span.
const outcomeKey = attribute.Key("daybook.message.outcome")

// Values of outcomeKey.
const (
	// outcomeProcessed: acknowledged after the handler succeeded (or dedup
	// recognised a redelivery of a message handled before).
	outcomeProcessed = "processed"
	// outcomeDeadLettered: acknowledged after the poison queue took it.
	outcomeDeadLettered = "dead_lettered"
	// outcomeFailed: not acknowledged (the dead-letter write failed); redelivered.
	outcomeFailed = "failed"
	// outcomeShutdown: interrupted by the worker stopping; redelivered.
	outcomeShutdown = "shutdown"
)

// tracing is the worker's tracing middleware on the global tracer provider
// and propagator (observability.SetupTracing; no-ops when tracing is off).
func tracing(h message.HandlerFunc) message.HandlerFunc {
	return messageTracer{}.Middleware(h)
}

// messageTracer gives every handled message a consumer span, a child of the
// span whose trace context the producer put in the message metadata (the
// API's request span), so one trace runs from the HTTP request through the
// queue to the worker. The span covers every attempt and is in the
// message's context for whatever runs inside to add children.
type messageTracer struct {
	tracing observability.Tracing
}

// Middleware must sit outside the poison queue and inside correlation: it
// reads the correlation id, and sees the poison queue's verdict.
func (m messageTracer) Middleware(h message.HandlerFunc) message.HandlerFunc {
	tracer := m.tracing.Tracer(tracerName)
	propagator := m.tracing.TextMapPropagator()
	return func(msg *message.Message) ([]*message.Message, error) {
		topic := message.SubscribeTopicFromCtx(msg.Context())
		name := "process"
		attrs := []attribute.KeyValue{
			semconv.MessagingOperationTypeProcess, semconv.MessagingOperationName(name),
			semconv.MessagingMessageID(msg.UUID),
		}
		if topic != "" {
			name += " " + topic
			attrs = append(attrs, semconv.MessagingDestinationName(topic))
		}
		if id := observability.CorrelationID(msg.Context()); id != "" {
			attrs = append(attrs, observability.CorrelationIDKey.String(id))
		}
		ctx := propagator.Extract(msg.Context(), propagation.MapCarrier(msg.Metadata))
		ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
		defer span.End()
		msg.SetContext(ctx)
		if !span.IsRecording() { // tracing off, or a trace not sampled: nothing to record
			return h(msg)
		}

		// A replayed dead letter still carries the reason it was dead-lettered
		// before, often the same text again. It is set aside while the message
		// is handled, so that a reason afterwards is the poison queue's verdict
		// on this handling, and put back when there is none.
		stale := msg.Metadata.Get(middleware.ReasonForPoisonedKey)
		delete(msg.Metadata, middleware.ReasonForPoisonedKey)
		out, err := h(msg)

		reason := msg.Metadata.Get(middleware.ReasonForPoisonedKey)
		if reason == "" && stale != "" {
			msg.Metadata.Set(middleware.ReasonForPoisonedKey, stale)
		}
		switch {
		case errors.Is(err, errShuttingDown):
			span.SetAttributes(outcomeKey.String(outcomeShutdown))
			span.RecordError(err)
		case err != nil:
			span.SetAttributes(outcomeKey.String(outcomeFailed))
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		case reason != "":
			span.SetAttributes(outcomeKey.String(outcomeDeadLettered))
			span.RecordError(errors.New(reason))
			span.SetStatus(codes.Error, reason)
		default:
			span.SetAttributes(outcomeKey.String(outcomeProcessed))
		}
		return out, err
	}
}
