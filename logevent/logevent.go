// Package logevent declares the events Daybook appends to its log: their type
// names, their streams and their data. It is the contract between the writers
// (ingest, ledger) and the readers (projections, reconcile), declared once so
// that no reader decodes an event "by shape" and no writer can change one
// without its readers seeing it. It imports nothing of Daybook's.
package logevent

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Event types.
const (
	// TypeEventProcessed: the ingest worker processed an event (stream event-<id>).
	TypeEventProcessed = "ingest.event_processed"
	// TypeAccountOpened: the first event of an account's stream.
	TypeAccountOpened = "ledger.account_opened"
	// TypeTransferCompleted: a transfer moved money (stream transfer-<id>).
	TypeTransferCompleted = "ledger.transfer_completed"
	// TypeAccountDebited and TypeAccountCredited: one posting on an account's stream.
	TypeAccountDebited  = "ledger.account_debited"
	TypeAccountCredited = "ledger.account_credited"
)

// Streams. An account's stream version equals its account_balances.version.
const (
	AccountStreamPrefix  = "account-"
	TransferStreamPrefix = "transfer-"
)

// AccountStream is the event stream of one account.
func AccountStream(id uuid.UUID) string { return AccountStreamPrefix + id.String() }

// TransferStream is the event stream of one transfer.
func TransferStream(id uuid.UUID) string { return TransferStreamPrefix + id.String() }

// The order rule, which the ingest writer enforces and the orders rebuild
// applies again: events of SourceOrderUpdates carry order_id and a
// payload.status string of 1 to OrderStatusLengthMax characters.
const (
	SourceOrderUpdates   = "order_updates"
	OrderStatusLengthMax = 50
)

// EventProcessed is the data of TypeEventProcessed.
type EventProcessed struct {
	EventID        uuid.UUID       `json:"event_id"`
	IdempotencyKey string          `json:"idempotency_key"`
	Source         string          `json:"source"`
	Type           string          `json:"type"`
	OrderID        string          `json:"order_id,omitempty"`
	Payload        json.RawMessage `json:"payload"`
	OccurredAt     *time.Time      `json:"occurred_at,omitempty"`
	ReceivedAt     time.Time       `json:"received_at"`
}

// AccountOpened is the data of TypeAccountOpened.
type AccountOpened struct {
	AccountID     uuid.UUID `json:"account_id"`
	Name          string    `json:"name"`
	Currency      string    `json:"currency"`
	AllowNegative bool      `json:"allow_negative"`
}

// TransferCompleted is the data of TypeTransferCompleted. Amounts are
// decimal strings with 4 places.
type TransferCompleted struct {
	TransferID    uuid.UUID      `json:"transfer_id"`
	FromAccountID uuid.UUID      `json:"from_account_id"`
	ToAccountID   uuid.UUID      `json:"to_account_id"`
	Amount        string         `json:"amount"`
	Currency      string         `json:"currency"`
	ReversalOf    *uuid.UUID     `json:"reversal_of,omitempty"`
	Metadata      map[string]any `json:"metadata,omitempty"`
}

// AccountPosting is the data of TypeAccountDebited and TypeAccountCredited:
// one ledger entry and the balance it left. Amount is signed like the entry
// (a debit is negative), so folding an account's postings sums its balance.
type AccountPosting struct {
	AccountID  uuid.UUID `json:"account_id"`
	TransferID uuid.UUID `json:"transfer_id"`
	EntryID    uuid.UUID `json:"entry_id"`
	Amount     string    `json:"amount"`
	Balance    string    `json:"balance"`
	Currency   string    `json:"currency"`
}
