package handlers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/daybook/daybook/observability"
)

// spanRecorder is a tracer provider of the test's own, recording every span
// it ends: parallel tests do not see each other's spans.
func spanRecorder(t *testing.T) (*tracetest.SpanRecorder, observability.Tracing) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { require.NoError(t, provider.Shutdown(context.Background())) })
	return rec, observability.Tracing{Provider: provider, Propagator: propagation.TraceContext{}}
}

// attrs flattens a span's attributes for an exact comparison.
func attrs(kvs []attribute.KeyValue) map[string]any {
	out := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value.AsInterface()
	}
	return out
}

// exceptions lists the messages of the errors recorded on a span.
func exceptions(s sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, e := range s.Events() {
		if e.Name != "exception" {
			continue
		}
		for _, kv := range e.Attributes {
			if kv.Key == "exception.message" {
				out = append(out, kv.Value.AsString())
			}
		}
	}
	return out
}

const (
	producerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	producerSpanID  = "00f067aa0ba902b7"
)

func TestTracing_ConsumerSpanContinuesTheProducersTrace(t *testing.T) {
	t.Parallel()
	rec, tr := spanRecorder(t)
	msg := message.NewMessage("msg-1", []byte(`{}`))
	msg.Metadata.Set(middleware.CorrelationIDMetadataKey, "corr-1")
	msg.Metadata.Set("traceparent", "00-"+producerTraceID+"-"+producerSpanID+"-01")
	msg.Metadata.Set("tracestate", "vendor=abc")

	var inner trace.SpanContext
	h := correlation(messageTracer{tracing: tr}.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		// What runs inside sees the consumer span and can add children to it.
		_, child := tr.Tracer("test").Start(msg.Context(), "store event")
		child.End()
		inner = trace.SpanContextFromContext(msg.Context())
		return nil, nil
	}))
	_, err := h(msg)
	require.NoError(t, err)

	ended := rec.Ended()
	require.Len(t, ended, 2)
	child, consumer := ended[0], ended[1]
	require.Equal(t, "process", consumer.Name()) // no router: no topic
	require.Equal(t, trace.SpanKindConsumer, consumer.SpanKind())
	require.Equal(t, producerTraceID, consumer.SpanContext().TraceID().String())
	require.Equal(t, producerSpanID, consumer.Parent().SpanID().String())
	require.True(t, consumer.Parent().IsRemote())
	require.Equal(t, "vendor=abc", consumer.SpanContext().TraceState().String())
	require.Equal(t, map[string]any{
		"messaging.operation.type": "process", "messaging.operation.name": "process",
		"messaging.message.id": "msg-1", "daybook.correlation_id": "corr-1", "daybook.message.outcome": "processed",
	}, attrs(consumer.Attributes()))
	require.Equal(t, codes.Unset, consumer.Status().Code)
	require.Empty(t, exceptions(consumer))

	require.Equal(t, consumer.SpanContext(), inner)
	require.Equal(t, consumer.SpanContext().SpanID(), child.Parent().SpanID())
	require.Equal(t, producerTraceID, child.SpanContext().TraceID().String())
}

func TestTracing_MessageWithoutTraceContextStartsATrace(t *testing.T) {
	t.Parallel()
	rec, tr := spanRecorder(t)
	msg := message.NewMessage("msg-2", []byte(`{}`))

	_, err := messageTracer{tracing: tr}.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, nil })(msg)
	require.NoError(t, err)

	ended := rec.Ended()
	require.Len(t, ended, 1)
	require.False(t, ended[0].Parent().IsValid())
	require.True(t, ended[0].SpanContext().IsValid())
	require.Equal(t, map[string]any{
		"messaging.operation.type": "process", "messaging.operation.name": "process",
		"messaging.message.id": "msg-2", "daybook.message.outcome": "processed",
	}, attrs(ended[0].Attributes()))
	require.Equal(t, map[string]string{}, map[string]string(msg.Metadata), "tracing must not write into the message")
}

func TestTracing_RecordsHowHandlingEnded(t *testing.T) {
	t.Parallel()
	boom := errors.New("archive unreachable")
	for name, tc := range map[string]struct {
		// before is the poisoned reason a replayed dead letter still carries.
		before      string
		handler     message.HandlerFunc
		wantOutcome string
		wantErr     error
		wantStatus  sdktrace.Status
		wantRecords []string
	}{
		"handled": {
			handler:     func(*message.Message) ([]*message.Message, error) { return nil, nil },
			wantOutcome: outcomeProcessed,
		},
		"dead-lettered": {
			handler:     func(*message.Message) ([]*message.Message, error) { return nil, boom },
			wantOutcome: outcomeDeadLettered,
			wantStatus:  sdktrace.Status{Code: codes.Error, Description: "archive unreachable"},
			wantRecords: []string{"archive unreachable"},
		},
		"replayed dead letter handled": {
			before:      "archive unreachable",
			handler:     func(*message.Message) ([]*message.Message, error) { return nil, nil },
			wantOutcome: outcomeProcessed,
		},
		"replayed dead letter dead-lettered again for the same reason": {
			before:      "archive unreachable",
			handler:     func(*message.Message) ([]*message.Message, error) { return nil, boom },
			wantOutcome: outcomeDeadLettered,
			wantStatus:  sdktrace.Status{Code: codes.Error, Description: "archive unreachable"},
			wantRecords: []string{"archive unreachable"},
		},
		"replayed dead letter dead-lettered again": {
			before:      "payload is not JSON",
			handler:     func(*message.Message) ([]*message.Message, error) { return nil, boom },
			wantOutcome: outcomeDeadLettered,
			wantStatus:  sdktrace.Status{Code: codes.Error, Description: "archive unreachable"},
			wantRecords: []string{"archive unreachable"},
		},
		"shutdown": {
			handler: func(*message.Message) ([]*message.Message, error) {
				return nil, fmt.Errorf("%w: %w", errShuttingDown, context.Canceled)
			},
			wantOutcome: outcomeShutdown,
			wantErr:     errShuttingDown,
			wantRecords: []string{"worker shutting down: context canceled"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rec, tr := spanRecorder(t)
			dlq := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
			t.Cleanup(func() { require.NoError(t, dlq.Close()) })
			poison, err := middleware.PoisonQueueWithFilter(dlq, "dlq", func(err error) bool { return !errors.Is(err, errShuttingDown) })
			require.NoError(t, err)
			msg := message.NewMessage("msg-3", []byte(`{}`))
			if tc.before != "" {
				msg.Metadata.Set(middleware.ReasonForPoisonedKey, tc.before)
			}

			_, err = messageTracer{tracing: tr}.Middleware(poison(tc.handler))(msg)
			require.ErrorIs(t, err, tc.wantErr)
			// The dead letter holds this handling's reason; otherwise the one set
			// aside during handling is back and the message is as it came.
			wantReason := tc.before
			if tc.wantOutcome == outcomeDeadLettered {
				wantReason = tc.wantStatus.Description
			}
			require.Equal(t, wantReason, msg.Metadata.Get(middleware.ReasonForPoisonedKey))

			ended := rec.Ended()
			require.Len(t, ended, 1)
			require.Equal(t, tc.wantOutcome, attrs(ended[0].Attributes())["daybook.message.outcome"])
			require.Equal(t, tc.wantStatus, ended[0].Status())
			require.Equal(t, tc.wantRecords, exceptions(ended[0]))
		})
	}
}

func TestTracing_UndeliveredDeadLetterFailsTheSpan(t *testing.T) {
	t.Parallel()
	rec, tr := spanRecorder(t)
	dlq := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	require.NoError(t, dlq.Close()) // a closed publisher refuses: the message is not acknowledged
	poison, err := middleware.PoisonQueue(dlq, "dlq")
	require.NoError(t, err)

	_, err = messageTracer{tracing: tr}.Middleware(poison(func(*message.Message) ([]*message.Message, error) {
		return nil, errors.New("archive unreachable")
	}))(message.NewMessage("msg-4", []byte(`{}`)))
	require.Error(t, err)

	ended := rec.Ended()
	require.Len(t, ended, 1)
	require.Equal(t, outcomeFailed, attrs(ended[0].Attributes())["daybook.message.outcome"])
	require.Equal(t, sdktrace.Status{Code: codes.Error, Description: err.Error()}, ended[0].Status())
	require.Equal(t, []string{err.Error()}, exceptions(ended[0]))
}

func TestTracing_OffLeavesTheMessageAlone(t *testing.T) {
	t.Parallel()
	off := observability.Tracing{Provider: noop.NewTracerProvider(), Propagator: propagation.NewCompositeTextMapPropagator()}
	msg := message.NewMessage("msg-5", []byte(`{}`))
	msg.Metadata.Set(middleware.ReasonForPoisonedKey, "archive unreachable")
	boom := errors.New("still unreachable")

	var seen map[string]string
	_, err := messageTracer{tracing: off}.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		seen = maps.Clone(msg.Metadata)
		require.False(t, trace.SpanFromContext(msg.Context()).IsRecording())
		return nil, boom
	})(msg)

	require.ErrorIs(t, err, boom)
	require.Equal(t, map[string]string{middleware.ReasonForPoisonedKey: "archive unreachable"}, seen)
}
