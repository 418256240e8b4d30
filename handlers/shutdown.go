package handlers

import (
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
)

// errShuttingDown marks a failure caused by the worker stopping: the message
// stays unacknowledged and is redelivered, and must not be dead-lettered.
var errShuttingDown = errors.New("worker shutting down")

// markShutdown wraps the error of a message whose context ended (the router
// is closing) so the poison queue lets it pass.
func markShutdown(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err != nil && msg.Context().Err() != nil {
			return out, fmt.Errorf("%w: %w", errShuttingDown, err)
		}
		return out, err
	}
}
