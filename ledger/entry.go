package ledger

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Direction is the side of a ledger entry.
type Direction string

// An entry is a debit (negative amount, money leaves the account) or a
// credit (positive amount, money arrives).
const (
	Debit  Direction = "debit"
	Credit Direction = "credit"
)

// Entry is one line of an account's ledger.
type Entry struct {
	ID uuid.UUID
	// TransactionID is the transfer that wrote the entry.
	TransactionID uuid.UUID
	AccountID     uuid.UUID
	// Amount is signed: a debit is negative.
	Amount    decimal.Decimal
	Direction Direction
	// RunningBalance is the account's balance just after this entry: the sum
	// of its entries up to and including this one, in id order.
	RunningBalance decimal.Decimal
	CreatedAt      time.Time
}

// EntriesLimitMax bounds one page of entries.
const EntriesLimitMax = 500

// EntriesParams selects a page of an account's entries in posting order.
type EntriesParams struct {
	// After is the keyset cursor: the last id of the previous page, or uuid.Nil.
	After uuid.UUID
	// Limit is the page size; 0 or more than EntriesLimitMax means EntriesLimitMax.
	Limit int
}

// Entries returns a page of an account's entries, oldest first, each with
// its running balance, and whether more follow. An unknown account is
// ErrAccountNotFound.
func (s *Service) Entries(ctx context.Context, accountID uuid.UUID, p EntriesParams) ([]Entry, bool, error) {
	if p.Limit <= 0 || p.Limit > EntriesLimitMax {
		p.Limit = EntriesLimitMax
	}
	entries, err := listEntries(ctx, s.pool, accountID, p)
	if err != nil {
		return nil, false, err
	}
	if len(entries) == 0 {
		// An empty page is also what an unknown account would give.
		if _, err := getAccount(ctx, s.pool, accountID); err != nil {
			return nil, false, err
		}
	}
	more := len(entries) > p.Limit
	if more {
		entries = entries[:p.Limit]
	}
	return entries, more, nil
}
