package handlers

import (
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/daybook/daybook/observability"
)

// correlation puts the message's correlation id (set by the API from the
// request) into its context, for every log line of the attempt.
func correlation(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if id := msg.Metadata.Get(middleware.CorrelationIDMetadataKey); id != "" {
			msg.SetContext(observability.WithCorrelationID(msg.Context(), id))
		}
		return h(msg)
	}
}
