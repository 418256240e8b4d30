package ledger

import (
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/daybook/daybook/eventstore"
)

// Event types the ledger appends to the log.
const (
	EventAccountOpened     = "ledger.account_opened"
	EventTransferCompleted = "ledger.transfer_completed"
	EventAccountDebited    = "ledger.account_debited"
	EventAccountCredited   = "ledger.account_credited"
)

// AccountStream is the event stream of one account. Its version equals the
// account's account_balances.version.
func AccountStream(id uuid.UUID) string { return "account-" + id.String() }

// TransferStream is the event stream of one transfer.
func TransferStream(id uuid.UUID) string { return "transfer-" + id.String() }

// AccountOpened is the data of EventAccountOpened.
type AccountOpened struct {
	AccountID     uuid.UUID `json:"account_id"`
	Name          string    `json:"name"`
	Currency      string    `json:"currency"`
	AllowNegative bool      `json:"allow_negative"`
}

// TransferCompleted is the data of EventTransferCompleted. Amounts are
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

// AccountPosting is the data of EventAccountDebited and EventAccountCredited:
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

// newEvent encodes data as an event of type typ.
func newEvent(typ string, data any) (eventstore.NewEvent, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return eventstore.NewEvent{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	return eventstore.NewEvent{Type: typ, Data: b}, nil
}
