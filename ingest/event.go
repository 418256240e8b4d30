package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
)

// Limits on an event's fields; the API validates them and so does the database.
const (
	IdempotencyKeyLengthMax = 255
	SourceLengthMax         = 100
	TypeLengthMax           = 100
	OrderIDLengthMax        = 100
	// APIKeyIDLengthMax matches the api_keys.id format.
	APIKeyIDLengthMax = 32
)

// Event is an accepted event as it travels on the queue.
type Event struct {
	ID             uuid.UUID       `json:"id"`
	IdempotencyKey string          `json:"idempotency_key"`
	Source         string          `json:"source"`
	Type           string          `json:"type"`
	OrderID        string          `json:"order_id,omitempty"`
	Payload        json.RawMessage `json:"payload"`
	OccurredAt     *time.Time      `json:"occurred_at,omitempty"`
	ReceivedAt     time.Time       `json:"received_at"`
	CorrelationID  string          `json:"correlation_id,omitempty"`
	// APIKeyID is the key that sent the event; empty when authentication was off.
	APIKeyID string `json:"api_key_id,omitempty"`
}

// Encode is the queue message body of e.
func (e Event) Encode() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	return b, nil
}

// Decode parses a queue message body and checks that it is a whole event.
func Decode(body []byte) (Event, error) {
	var e Event
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	if err := expectEnd(dec); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	if err := e.validate(); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	return e, nil
}

func (e Event) validate() error {
	var errs []error
	if e.ID == uuid.Nil {
		errs = append(errs, errors.New("id is missing"))
	}
	if n := len(e.IdempotencyKey); n == 0 || n > IdempotencyKeyLengthMax {
		errs = append(errs, fmt.Errorf("idempotency_key must have 1 to %d bytes", IdempotencyKeyLengthMax))
	}
	if n := len(e.Source); n == 0 || n > SourceLengthMax {
		errs = append(errs, fmt.Errorf("source must have 1 to %d bytes", SourceLengthMax))
	}
	if n := len(e.Type); n == 0 || n > TypeLengthMax {
		errs = append(errs, fmt.Errorf("type must have 1 to %d bytes", TypeLengthMax))
	}
	if len(e.APIKeyID) > APIKeyIDLengthMax {
		errs = append(errs, fmt.Errorf("api_key_id must have at most %d bytes", APIKeyIDLengthMax))
	}
	if len(e.OrderID) > OrderIDLengthMax {
		errs = append(errs, fmt.Errorf("order_id must have at most %d bytes", OrderIDLengthMax))
	}
	if len(e.Payload) == 0 || e.Payload[0] != '{' || !json.Valid(e.Payload) {
		errs = append(errs, errors.New("payload must be a JSON object"))
	}
	if e.ReceivedAt.IsZero() {
		errs = append(errs, errors.New("received_at is missing"))
	}
	return errors.Join(errs...)
}

// IdempotencyKey picks an event's key: the X-Idempotency-Key header, else the
// client's event_id, else the SHA-256 of the canonical form of body, so that
// a client that sends the same body twice without any key is still
// deduplicated. The body is re-encoded only in that last case: it is the
// costliest step of an ingest. An error means body is not one JSON document.
func IdempotencyKey(header, eventID string, body []byte) (string, error) {
	switch {
	case header != "":
		return header, nil
	case eventID != "":
		return eventID, nil
	}
	canonical, err := Canonical(body)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Canonical re-encodes a JSON document with object keys sorted and no
// insignificant white space; numbers keep their exact text.
func Canonical(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	// Without this, {"a":1}{"b":2} would share the key of {"a":1}.
	if err := expectEnd(dec); err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	// encoding/json sorts map keys; HTML escaping is off so that <, > and &
	// stay as written, as any other JSON encoder would leave them.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// expectEnd fails when dec holds anything but white space after the document
// it has decoded.
func expectEnd(dec *json.Decoder) error {
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON document")
	}
	return nil
}
