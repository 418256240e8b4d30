package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/logevent"
)

// StatusCompleted is the status of every stored transfer: one that is
// refused is not stored at all.
const StatusCompleted = "COMPLETED"

const (
	// idempotencyKeyMax is the longest idempotency key, in characters.
	idempotencyKeyMax = 255
	// metadataBytesMax bounds a transfer's metadata, encoded as JSON.
	metadataBytesMax = 16 << 10
	// requestHashVersion starts every hashed request, so that a change of the
	// encoding can never make an old key's hash match a new request.
	requestHashVersion = "daybook.transfer.v1"
)

// Transfer is a completed movement of money between two accounts.
type Transfer struct {
	ID             uuid.UUID
	IdempotencyKey string
	FromAccountID  uuid.UUID
	ToAccountID    uuid.UUID
	Amount         decimal.Decimal
	Currency       string
	Status         string
	// ReversalOf is the transfer this one reverses, or uuid.Nil.
	ReversalOf uuid.UUID
	// Metadata is the client's, as JSON decodes it (numbers are float64).
	Metadata map[string]any
	// APIKeyID is the key that made the transfer; "" when authentication was off.
	APIKeyID  string
	CreatedAt time.Time
}

// TransferParams asks for a transfer.
type TransferParams struct {
	From, To uuid.UUID
	// Amount is positive with at most 4 decimal places (see ParseAmount).
	Amount decimal.Decimal
	// Currency, when not empty, must be the currency of both accounts.
	Currency string
	// IdempotencyKey is 1 to 255 characters.
	IdempotencyKey string
	// Metadata is stored with the transfer; at most 16 KiB as JSON.
	Metadata map[string]any
	// APIKeyID records who asked (see Transfer.APIKeyID); it is not part of
	// the request's identity, so a retry under another key is still a replay.
	APIKeyID string
}

// ReverseParams names the transfer to undo and the key of the reversal.
type ReverseParams struct {
	TransferID     uuid.UUID
	IdempotencyKey string
	APIKeyID       string
}

// transferRequest is a validated transfer, with the hash that identifies it.
type transferRequest struct {
	from, to   uuid.UUID
	amount     decimal.Decimal
	currency   string // "" = whatever the accounts hold
	key        string
	metadata   json.RawMessage // canonical: encoding/json sorts map keys
	reversalOf uuid.UUID
	apiKeyID   string
	hash       string
}

func newTransferRequest(p TransferParams, reversalOf uuid.UUID) (transferRequest, error) {
	if err := checkAmount(p.Amount); err != nil {
		return transferRequest{}, err
	}
	if p.From == p.To {
		return transferRequest{}, fmt.Errorf("transfer from %s to itself: %w", p.From, ErrSameAccount)
	}
	if p.Currency != "" {
		if err := checkCurrency(p.Currency); err != nil {
			return transferRequest{}, err
		}
	}
	if err := checkIdempotencyKey(p.IdempotencyKey); err != nil {
		return transferRequest{}, err
	}
	metadata := p.Metadata
	if metadata == nil {
		metadata = map[string]any{}
	}
	encoded, err := json.Marshal(metadata)
	if err != nil {
		return transferRequest{}, fmt.Errorf("metadata is not JSON: %w: %w", err, ErrInvalidInput)
	}
	if len(encoded) > metadataBytesMax {
		return transferRequest{}, fmt.Errorf("metadata is %d bytes as JSON, more than %d: %w", len(encoded), metadataBytesMax, ErrInvalidInput)
	}
	r := transferRequest{
		from: p.From, to: p.To, amount: p.Amount.Round(AmountPlaces), currency: p.Currency,
		key: p.IdempotencyKey, metadata: encoded, reversalOf: reversalOf, apiKeyID: p.APIKeyID,
	}
	r.hash, err = r.computeHash()
	if err != nil {
		return transferRequest{}, err
	}
	return r, nil
}

func checkIdempotencyKey(key string) error {
	if key == "" || !utf8.ValidString(key) || utf8.RuneCountInString(key) > idempotencyKeyMax || strings.ContainsRune(key, 0) {
		return fmt.Errorf("idempotency key must be 1 to %d characters of UTF-8 without NUL: %w", idempotencyKeyMax, ErrInvalidInput)
	}
	return nil
}

// computeHash is the SHA-256 of the request's canonical encoding: a JSON
// array of every field that says what the request does, the amount at 4
// places (so "100.5" and "100.50" are one request). The currency is hashed
// as given: leaving it out and naming it are different requests.
func (r transferRequest) computeHash() (string, error) {
	reversalOf := ""
	if r.reversalOf != uuid.Nil {
		reversalOf = r.reversalOf.String()
	}
	canonical, err := json.Marshal([]any{
		requestHashVersion, r.from.String(), r.to.String(), formatAmount(r.amount), r.currency, r.metadata, reversalOf,
	})
	if err != nil {
		return "", fmt.Errorf("encode request: %w", err)
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:]), nil
}

// replayOf answers a request whose key is already stored: the stored
// transfer when it was made by the same request, else a conflict.
func (r transferRequest) replayOf(stored storedTransfer) (Transfer, error) {
	if stored.requestHash != r.hash {
		return Transfer{}, fmt.Errorf("key %q names transfer %s: %w", r.key, stored.ID, ErrIdempotencyConflict)
	}
	return stored.Transfer, nil
}

// Transfer moves p.Amount from p.From to p.To, or, when p.IdempotencyKey
// was used before by the same request, returns that transfer with created
// false. See the package comment for what it checks and writes.
func (s *Service) Transfer(ctx context.Context, p TransferParams) (t Transfer, created bool, err error) {
	req, err := newTransferRequest(p, uuid.Nil)
	if err != nil {
		return Transfer{}, false, fmt.Errorf("transfer: %w", err)
	}
	return s.transfer(ctx, req)
}

// Reverse undoes a transfer with a new one, from its receiver back to its
// sender for the same amount. The same key again returns that reversal
// (created false); a second reversal under another key is
// ErrAlreadyReversed. It is subject to the balance check like any transfer:
// when the receiver has spent the money, ErrInsufficientFunds.
func (s *Service) Reverse(ctx context.Context, p ReverseParams) (t Transfer, created bool, err error) {
	if err := checkIdempotencyKey(p.IdempotencyKey); err != nil {
		return Transfer{}, false, fmt.Errorf("reverse transfer %s: %w", p.TransferID, err)
	}
	original, err := s.GetTransfer(ctx, p.TransferID)
	if err != nil {
		return Transfer{}, false, fmt.Errorf("reverse: %w", err)
	}
	req, err := newTransferRequest(TransferParams{
		From: original.ToAccountID, To: original.FromAccountID, Amount: original.Amount,
		Currency: original.Currency, IdempotencyKey: p.IdempotencyKey, APIKeyID: p.APIKeyID,
	}, original.ID)
	if err != nil {
		return Transfer{}, false, fmt.Errorf("reverse transfer %s: %w", p.TransferID, err)
	}
	return s.transfer(ctx, req)
}

// GetTransfer returns one transfer.
func (s *Service) GetTransfer(ctx context.Context, id uuid.UUID) (Transfer, error) {
	stored, err := getTransfer(ctx, s.pool, id)
	if err != nil {
		return Transfer{}, err
	}
	return stored.Transfer, nil
}

func (s *Service) transfer(ctx context.Context, req transferRequest) (t Transfer, created bool, err error) {
	if s.locks != nil {
		unlock, err := s.locks.lock(ctx, req.from, req.to)
		if err != nil {
			return Transfer{}, false, fmt.Errorf("transfer: %w", err)
		}
		defer unlock()
	}
	err = withRetry(ctx, s.cfg, func() error {
		var err error
		t, created, err = s.transferOnce(ctx, req)
		return err
	})
	if err != nil {
		return Transfer{}, false, fmt.Errorf("transfer: %w", err)
	}
	return t, created, nil
}

// transferOnce is one attempt, in one transaction.
func (s *Service) transferOnce(ctx context.Context, req transferRequest) (Transfer, bool, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Transfer{}, false, fmt.Errorf("begin: %w", err)
	}
	// After a commit this does nothing; otherwise it undoes every write.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	locked, err := lockAccountsTx(ctx, tx, lockParams{
		accounts: []uuid.UUID{req.from, req.to}, key: req.key, reversalOf: req.reversalOf,
	})
	if err != nil {
		return Transfer{}, false, err
	}
	// The key is looked up after the locks: a twin of this request holds the
	// same locks, so by now it has committed and is seen, and this attempt
	// returns its transfer instead of, say, finding the money already gone.
	if locked.holder != nil {
		t, err := req.replayOf(*locked.holder)
		return t, false, err
	}
	if locked.reversedBy != uuid.Nil {
		return Transfer{}, false, fmt.Errorf("transfer %s is reversed by %s: %w", req.reversalOf, locked.reversedBy, ErrAlreadyReversed)
	}
	from, ok := locked.balances[req.from]
	if !ok {
		return Transfer{}, false, fmt.Errorf("from account %s: %w", req.from, ErrAccountNotFound)
	}
	to, ok := locked.balances[req.to]
	if !ok {
		return Transfer{}, false, fmt.Errorf("to account %s: %w", req.to, ErrAccountNotFound)
	}
	// Ids are made while the rows are locked, so that an account's entries
	// sort by id in the order they were posted (UUIDv7 is monotonic within
	// the process).
	plan, err := planTransfer(req, from, to)
	if err != nil {
		return Transfer{}, false, err
	}

	written, err := writeTransferTx(ctx, tx, plan)
	if errors.Is(err, errKeyTaken) || errors.Is(err, ErrAlreadyReversed) {
		// A request with the same key, but other accounts, committed first; or
		// for a reversal, possibly a twin that got to reversal_of first. The
		// stored row decides.
		_ = tx.Rollback(ctx)
		return s.replayByKey(ctx, req, err)
	}
	if err != nil {
		return Transfer{}, false, err
	}
	if err := plan.verify(written); err != nil {
		return Transfer{}, false, err
	}
	appends, err := plan.events(written)
	if err != nil {
		return Transfer{}, false, err
	}
	if _, err := eventstore.AppendManyTx(ctx, tx, appends); err != nil {
		return Transfer{}, false, fmt.Errorf("append transfer events: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Transfer{}, false, fmt.Errorf("commit: %w", translate(err))
	}
	return plan.transfer(written.createdAt), true, nil
}

// replayByKey answers a request that lost the race for its key (or, for a
// reversal, for reversal_of) to a transaction that has committed.
func (s *Service) replayByKey(ctx context.Context, req transferRequest, lost error) (Transfer, bool, error) {
	stored, err := transferByKey(ctx, s.pool, req.key)
	if errors.Is(err, ErrTransferNotFound) {
		if errors.Is(lost, ErrAlreadyReversed) {
			return Transfer{}, false, lost
		}
		return Transfer{}, false, fmt.Errorf("key %q was taken, yet no transfer holds it", req.key)
	}
	if err != nil {
		return Transfer{}, false, err
	}
	t, err := req.replayOf(stored)
	return t, false, err
}

// posting is one side of a transfer: an entry and what it does to its
// account's balance row.
type posting struct {
	entryID       uuid.UUID
	accountID     uuid.UUID
	amount        decimal.Decimal // signed: a debit is negative
	direction     Direction
	balanceBefore decimal.Decimal
	balanceAfter  decimal.Decimal
	versionBefore int64
}

// transferPlan is a transfer checked against the locked balances, ready to write.
type transferPlan struct {
	id       uuid.UUID
	req      transferRequest
	currency string
	debit    posting
	credit   posting
}

// planTransfer checks req against the locked balance rows and works out
// the entries and the balances they leave.
func planTransfer(req transferRequest, from, to lockedBalance) (transferPlan, error) {
	if from.Currency != to.Currency {
		return transferPlan{}, fmt.Errorf("from account is in %s, to account in %s: %w", from.Currency, to.Currency, ErrCurrencyMismatch)
	}
	if req.currency != "" && req.currency != from.Currency {
		return transferPlan{}, fmt.Errorf("transfer in %s between accounts in %s: %w", req.currency, from.Currency, ErrCurrencyMismatch)
	}
	fromAfter := from.Balance.Sub(req.amount)
	if !from.AllowNegative && fromAfter.IsNegative() {
		return transferPlan{}, fmt.Errorf("account %s holds %s, %s asked: %w",
			from.AccountID, formatAmount(from.Balance), formatAmount(req.amount), ErrInsufficientFunds)
	}
	if fromAfter.LessThan(amountMax.Neg()) {
		return transferPlan{}, fmt.Errorf("account %s would go below -%s: %w", from.AccountID, AmountMaxText, ErrInvalidAmount)
	}
	toAfter := to.Balance.Add(req.amount)
	if toAfter.GreaterThan(amountMax) {
		return transferPlan{}, fmt.Errorf("account %s would go above %s: %w", to.AccountID, AmountMaxText, ErrInvalidAmount)
	}
	var ids [3]uuid.UUID
	for i := range ids {
		id, err := uuid.NewV7()
		if err != nil {
			return transferPlan{}, fmt.Errorf("new id: %w", err)
		}
		ids[i] = id
	}
	return transferPlan{
		id:       ids[0],
		req:      req,
		currency: from.Currency,
		debit: posting{
			entryID: ids[1], accountID: from.AccountID, amount: req.amount.Neg(), direction: Debit,
			balanceBefore: from.Balance, balanceAfter: fromAfter, versionBefore: from.Version,
		},
		credit: posting{
			entryID: ids[2], accountID: to.AccountID, amount: req.amount, direction: Credit,
			balanceBefore: to.Balance, balanceAfter: toAfter, versionBefore: to.Version,
		},
	}, nil
}

// verify asserts what must hold after the writes, from what the database
// returned: the entries balance, and each balance row moved by exactly its
// entry and one version.
func (p transferPlan) verify(w writtenTransfer) error {
	if len(w.postings) != 2 {
		return fmt.Errorf("ledger invariant: transfer %s wrote %d postings, want 2", p.id, len(w.postings))
	}
	sum := decimal.Zero
	for _, want := range []posting{p.debit, p.credit} {
		got, ok := w.postings[want.accountID]
		if !ok {
			return fmt.Errorf("ledger invariant: transfer %s wrote nothing to account %s", p.id, want.accountID)
		}
		if got.entryID != want.entryID || !got.amount.Equal(want.amount) {
			return fmt.Errorf("ledger invariant: account %s: entry %s of %s, want %s of %s",
				want.accountID, got.entryID, got.amount, want.entryID, want.amount)
		}
		if !got.balance.Equal(want.balanceBefore.Add(got.amount)) || !got.balance.Equal(want.balanceAfter) {
			return fmt.Errorf("ledger invariant: account %s: balance %s after %s + %s",
				want.accountID, got.balance, want.balanceBefore, got.amount)
		}
		if got.version != want.versionBefore+1 {
			return fmt.Errorf("ledger invariant: account %s: version %d after %d", want.accountID, got.version, want.versionBefore)
		}
		sum = sum.Add(got.amount)
	}
	if !sum.IsZero() {
		return fmt.Errorf("ledger invariant: transfer %s: entries sum to %s", p.id, sum)
	}
	return nil
}

// events are the appends of a written transfer: its own stream, and each
// account's stream at the version its balance row had.
func (p transferPlan) events(w writtenTransfer) ([]eventstore.Append, error) {
	t := p.transfer(w.createdAt)
	var reversalOf *uuid.UUID
	if t.ReversalOf != uuid.Nil {
		reversalOf = &t.ReversalOf
	}
	completed, err := newEvent(logevent.TypeTransferCompleted, logevent.TransferCompleted{
		TransferID: t.ID, FromAccountID: t.FromAccountID, ToAccountID: t.ToAccountID,
		Amount: formatAmount(t.Amount), Currency: t.Currency, ReversalOf: reversalOf, Metadata: t.Metadata,
	})
	if err != nil {
		return nil, err
	}
	appends := []eventstore.Append{{StreamID: logevent.TransferStream(p.id), ExpectedVersion: eventstore.ExpectNew, Events: []eventstore.NewEvent{completed}}}
	for _, side := range []struct {
		posting
		typ string
	}{{p.debit, logevent.TypeAccountDebited}, {p.credit, logevent.TypeAccountCredited}} {
		event, err := newEvent(side.typ, logevent.AccountPosting{
			AccountID: side.accountID, TransferID: p.id, EntryID: side.entryID,
			Amount: formatAmount(side.amount), Balance: formatAmount(side.balanceAfter), Currency: p.currency,
		})
		if err != nil {
			return nil, err
		}
		appends = append(appends, eventstore.Append{
			StreamID: logevent.AccountStream(side.accountID), ExpectedVersion: side.versionBefore, Events: []eventstore.NewEvent{event},
		})
	}
	return appends, nil
}

// transfer is the plan as the transfer it stored.
func (p transferPlan) transfer(createdAt time.Time) Transfer {
	var metadata map[string]any
	// The request's own canonical encoding: it decodes, as it would from the
	// database, with numbers as float64.
	_ = json.Unmarshal(p.req.metadata, &metadata)
	return Transfer{
		ID: p.id, IdempotencyKey: p.req.key, FromAccountID: p.req.from, ToAccountID: p.req.to,
		Amount: p.req.amount, Currency: p.currency, Status: StatusCompleted, ReversalOf: p.req.reversalOf,
		Metadata: metadata, APIKeyID: p.req.apiKeyID, CreatedAt: createdAt,
	}
}
