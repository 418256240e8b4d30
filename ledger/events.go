package ledger

import (
	"encoding/json"
	"fmt"

	"github.com/daybook/daybook/eventstore"
)

// newEvent encodes data as an event of type typ.
func newEvent(typ string, data any) (eventstore.NewEvent, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return eventstore.NewEvent{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	return eventstore.NewEvent{Type: typ, Data: b}, nil
}
