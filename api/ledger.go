package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/ledger"
)

// AccountOut is an account and its balance.
type AccountOut struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Currency      string    `json:"currency"`
	AllowNegative bool      `json:"allow_negative"`
	Balance       string    `json:"balance" example:"0.0000" doc:"Decimal string with 4 places."`
	Version       int64     `json:"version" doc:"Events in the account's stream."`
	APIKeyID      string    `json:"api_key_id,omitempty" doc:"The API key that opened the account."`
	CreatedAt     time.Time `json:"created_at"`
}

func accountOut(a ledger.Account) AccountOut {
	return AccountOut{
		ID: a.ID.String(), Name: a.Name, Currency: a.Currency, AllowNegative: a.AllowNegative,
		Balance: money(a.Balance), Version: a.Version, APIKeyID: a.APIKeyID, CreatedAt: a.CreatedAt,
	}
}

// money renders an amount with exactly 4 places, as numeric(20,4) holds it.
func money(d decimal.Decimal) string { return d.StringFixed(4) }

type createAccountInput struct {
	Body struct {
		Name          string `json:"name" minLength:"1" maxLength:"200"`
		Currency      string `json:"currency,omitempty" default:"USD" pattern:"^[A-Z]{3}$"`
		AllowNegative bool   `json:"allow_negative,omitempty" doc:"An external (world) account through which money enters the ledger."`
	}
}

type accountOutput struct {
	Body AccountOut
}

type accountIDInput struct {
	ID string `path:"id" format:"uuid"`
}

// EntryOut is one line of an account's ledger.
type EntryOut struct {
	ID             string    `json:"id"`
	TransactionID  string    `json:"transaction_id"`
	Amount         string    `json:"amount" doc:"Signed: a debit is negative."`
	Direction      string    `json:"direction" enum:"debit,credit"`
	RunningBalance string    `json:"running_balance"`
	CreatedAt      time.Time `json:"created_at"`
}

type entriesInput struct {
	ID     string `path:"id" format:"uuid"`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" default:"50"`
	Cursor string `query:"cursor"`
}

type entriesOutput struct {
	Body struct {
		Items      []EntryOut `json:"items"`
		NextCursor *string    `json:"next_cursor" nullable:"true"`
	}
}

// TransferOut is a completed transfer.
type TransferOut struct {
	ID             string         `json:"id"`
	FromAccountID  string         `json:"from_account_id"`
	ToAccountID    string         `json:"to_account_id"`
	Amount         string         `json:"amount"`
	Currency       string         `json:"currency"`
	Status         string         `json:"status" enum:"COMPLETED"`
	IdempotencyKey string         `json:"idempotency_key"`
	ReversalOf     *string        `json:"reversal_of" nullable:"true"`
	Metadata       map[string]any `json:"metadata,omitempty"`
	APIKeyID       string         `json:"api_key_id,omitempty" doc:"The API key that made the transfer."`
	CreatedAt      time.Time      `json:"created_at"`
}

func transferOut(t ledger.Transfer) TransferOut {
	out := TransferOut{
		ID: t.ID.String(), FromAccountID: t.FromAccountID.String(), ToAccountID: t.ToAccountID.String(),
		Amount: money(t.Amount), Currency: t.Currency, Status: t.Status, IdempotencyKey: t.IdempotencyKey,
		Metadata: t.Metadata, APIKeyID: t.APIKeyID, CreatedAt: t.CreatedAt,
	}
	if t.ReversalOf != uuid.Nil {
		r := t.ReversalOf.String()
		out.ReversalOf = &r
	}
	return out
}

type transferInput struct {
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255" doc:"Accepted instead of the body's idempotency_key; if both are given they must match."`
	Body           struct {
		FromAccountID  string         `json:"from_account_id" format:"uuid"`
		ToAccountID    string         `json:"to_account_id" format:"uuid"`
		Amount         string         `json:"amount" maxLength:"30" example:"100.50" doc:"A decimal string with at most 4 places, greater than 0. Never a JSON number."`
		Currency       string         `json:"currency,omitempty" pattern:"^[A-Z]{3}$" doc:"When given, must be the currency of both accounts."`
		IdempotencyKey string         `json:"idempotency_key,omitempty" maxLength:"255"`
		Metadata       map[string]any `json:"metadata,omitempty"`
	}
}

type transferOutput struct {
	Status int
	Body   TransferOut
}

type transferIDInput struct {
	ID string `path:"id" format:"uuid"`
}

type reversalInput struct {
	ID             string `path:"id" format:"uuid"`
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255"`
	Body           struct {
		IdempotencyKey string `json:"idempotency_key,omitempty" maxLength:"255"`
	}
}

func (s *Server) registerLedger() {
	tags := []string{"Ledger"}
	register(s, huma.Operation{
		Security:    requires(apikey.ScopeLedgerWrite),
		OperationID: "createAccount", Method: http.MethodPost, Path: "/accounts", Tags: tags,
		Summary: "Open an account", DefaultStatus: http.StatusCreated, Errors: []int{422},
	}, s.createAccount)
	register(s, huma.Operation{
		Security:    requires(apikey.ScopeLedgerRead),
		OperationID: "getAccount", Method: http.MethodGet, Path: "/accounts/{id}", Tags: tags,
		Summary: "An account with its balance and version", Errors: []int{404, 422},
	}, s.getAccount)
	register(s, huma.Operation{
		Security:    requires(apikey.ScopeLedgerRead),
		OperationID: "listEntries", Method: http.MethodGet, Path: "/accounts/{id}/entries", Tags: tags,
		Summary: "An account's entries with the running balance, oldest first", Errors: []int{404, 422},
	}, s.listEntries)
	register(s, huma.Operation{
		Security:    requires(apikey.ScopeLedgerWrite),
		OperationID: "createTransfer", Method: http.MethodPost, Path: "/transfers", Tags: tags,
		Summary:       "Move money between two accounts",
		Description:   "201 when moved; 200 with the original for the same key and body; 409 for the same key with another body; 422 with a problem type ending in insufficient-funds when the money is not there (nothing is written).",
		DefaultStatus: http.StatusCreated, Errors: []int{404, 409, 422, 503},
		Responses: s.okForRepeat(TransferOut{}, "OK: the original transfer, for the same key and body again"),
	}, s.createTransfer)
	register(s, huma.Operation{
		Security:    requires(apikey.ScopeLedgerRead),
		OperationID: "getTransfer", Method: http.MethodGet, Path: "/transfers/{id}", Tags: tags,
		Summary: "A transfer", Errors: []int{404, 422},
	}, s.getTransfer)
	register(s, huma.Operation{
		Security:    requires(apikey.ScopeLedgerWrite),
		OperationID: "reverseTransfer", Method: http.MethodPost, Path: "/transfers/{id}/reversal", Tags: tags,
		Summary:       "Undo a transfer with a new, opposite transfer",
		DefaultStatus: http.StatusCreated, Errors: []int{404, 409, 422, 503},
		Responses: s.okForRepeat(TransferOut{}, "OK: the original reversal, for the same key again"),
	}, s.reverseTransfer)
}

func (s *Server) createAccount(ctx context.Context, in *createAccountInput) (*accountOutput, error) {
	a, err := s.deps.Ledger.CreateAccount(ctx, ledger.CreateAccountParams{
		Name: in.Body.Name, Currency: in.Body.Currency, AllowNegative: in.Body.AllowNegative, APIKeyID: keyIDFrom(ctx),
	})
	if err != nil {
		return nil, ledgerError(err)
	}
	return &accountOutput{Body: accountOut(a)}, nil
}

func (s *Server) getAccount(ctx context.Context, in *accountIDInput) (*accountOutput, error) {
	id, err := parseID(in.ID, "path.id")
	if err != nil {
		return nil, err
	}
	a, err := s.deps.Ledger.GetAccount(ctx, id)
	if err != nil {
		return nil, ledgerError(err)
	}
	return &accountOutput{Body: accountOut(a)}, nil
}

func (s *Server) listEntries(ctx context.Context, in *entriesInput) (*entriesOutput, error) {
	id, err := parseID(in.ID, "path.id")
	if err != nil {
		return nil, err
	}
	after, err := decodeCursor(in.Cursor)
	if err != nil {
		return nil, err
	}
	entries, more, err := s.deps.Ledger.Entries(ctx, id, ledger.EntriesParams{After: after, Limit: in.Limit})
	if err != nil {
		return nil, ledgerError(err)
	}
	out := &entriesOutput{}
	out.Body.Items = make([]EntryOut, len(entries))
	for i, e := range entries {
		out.Body.Items[i] = EntryOut{
			ID: e.ID.String(), TransactionID: e.TransactionID.String(), Amount: money(e.Amount),
			Direction: string(e.Direction), RunningBalance: money(e.RunningBalance), CreatedAt: e.CreatedAt,
		}
	}
	if more {
		out.Body.NextCursor = encodeCursor(entries[len(entries)-1].ID)
	}
	return out, nil
}

func (s *Server) createTransfer(ctx context.Context, in *transferInput) (*transferOutput, error) {
	key, err := oneKey(in.IdempotencyKey, in.Body.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	from, err := parseID(in.Body.FromAccountID, "body.from_account_id")
	if err != nil {
		return nil, err
	}
	to, err := parseID(in.Body.ToAccountID, "body.to_account_id")
	if err != nil {
		return nil, err
	}
	amount, err := ledger.ParseAmount(in.Body.Amount)
	if err != nil {
		s.deps.Metrics.TransfersTotal.WithLabelValues("invalid").Inc()
		return nil, fieldError("body.amount", in.Body.Amount, "amount must be a decimal string greater than 0 with at most 4 places, such as \"100.50\"")
	}
	t, created, err := s.deps.Ledger.Transfer(ctx, ledger.TransferParams{
		From: from, To: to, Amount: amount, Currency: in.Body.Currency, IdempotencyKey: key, Metadata: in.Body.Metadata,
		APIKeyID: keyIDFrom(ctx),
	})
	return s.transferResult(t, created, err)
}

func (s *Server) getTransfer(ctx context.Context, in *transferIDInput) (*transferOutput, error) {
	id, err := parseID(in.ID, "path.id")
	if err != nil {
		return nil, err
	}
	t, err := s.deps.Ledger.GetTransfer(ctx, id)
	if err != nil {
		return nil, ledgerError(err)
	}
	return &transferOutput{Status: http.StatusOK, Body: transferOut(t)}, nil
}

func (s *Server) reverseTransfer(ctx context.Context, in *reversalInput) (*transferOutput, error) {
	key, err := oneKey(in.IdempotencyKey, in.Body.IdempotencyKey)
	if err != nil {
		return nil, err
	}
	id, err := parseID(in.ID, "path.id")
	if err != nil {
		return nil, err
	}
	t, created, err := s.deps.Ledger.Reverse(ctx, ledger.ReverseParams{TransferID: id, IdempotencyKey: key, APIKeyID: keyIDFrom(ctx)})
	return s.transferResult(t, created, err)
}

func (s *Server) transferResult(t ledger.Transfer, created bool, err error) (*transferOutput, error) {
	if err != nil {
		s.deps.Metrics.TransfersTotal.WithLabelValues(transferResultLabel(err)).Inc()
		return nil, ledgerError(err)
	}
	if !created {
		s.deps.Metrics.TransfersTotal.WithLabelValues("replayed").Inc()
		return &transferOutput{Status: http.StatusOK, Body: transferOut(t)}, nil
	}
	s.deps.Metrics.TransfersTotal.WithLabelValues("completed").Inc()
	return &transferOutput{Status: http.StatusCreated, Body: transferOut(t)}, nil
}

// oneKey takes the idempotency key from the header or the body; both may
// be given only if they agree.
func oneKey(header, body string) (string, error) {
	switch {
	case header != "" && body != "" && header != body:
		return "", fieldError("header.Idempotency-Key", header, "Idempotency-Key and body.idempotency_key differ; send one, or the same in both")
	case header != "":
		return header, nil
	case body != "":
		return body, nil
	}
	return "", fieldError("body.idempotency_key", nil, "an idempotency key is required (body.idempotency_key or the Idempotency-Key header)")
}

func parseID(s, location string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fieldError(location, s, "must be a UUID")
	}
	return id, nil
}

// fieldError is a 422 naming the failing field, in huma's shape.
func fieldError(location string, value any, message string) error {
	return huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{Location: location, Value: value, Message: message})
}

// problemTypeInsufficientFunds is the problem type of a refused debit. It is
// an absolute URI, as the document's format: uri says (a relative one would
// resolve against each request's URL); a tag URI names it without promising
// a page to fetch.
const problemTypeInsufficientFunds = "tag:daybook.dev,2026:problems/insufficient-funds"

// ledgerError maps the ledger's errors to HTTP: this is the one place.
func ledgerError(err error) error {
	switch {
	case errors.Is(err, ledger.ErrAccountNotFound), errors.Is(err, ledger.ErrTransferNotFound):
		return huma.Error404NotFound(err.Error())
	case errors.Is(err, ledger.ErrInsufficientFunds):
		return &huma.ErrorModel{
			Type: problemTypeInsufficientFunds, Title: http.StatusText(http.StatusUnprocessableEntity), Status: http.StatusUnprocessableEntity,
			Detail: "the debited account does not hold enough money; nothing was written",
		}
	case errors.Is(err, ledger.ErrIdempotencyConflict):
		return huma.Error409Conflict("this idempotency key was used for a different request")
	case errors.Is(err, ledger.ErrAlreadyReversed):
		return huma.Error409Conflict("the transfer is already reversed")
	case errors.Is(err, ledger.ErrLockBusy):
		return retryAfter(huma.Error409Conflict("an account of this transfer is busy; retry"), time.Second)
	case errors.Is(err, ledger.ErrSameAccount), errors.Is(err, ledger.ErrCurrencyMismatch),
		errors.Is(err, ledger.ErrInvalidAmount), errors.Is(err, ledger.ErrInvalidInput):
		return huma.Error422UnprocessableEntity(err.Error())
	}
	return unavailable("the ledger cannot answer now", err)
}

func transferResultLabel(err error) string {
	switch {
	case errors.Is(err, ledger.ErrInsufficientFunds):
		return "insufficient_funds"
	case errors.Is(err, ledger.ErrIdempotencyConflict):
		return "conflict"
	case errors.Is(err, ledger.ErrAccountNotFound), errors.Is(err, ledger.ErrTransferNotFound):
		return "not_found"
	case errors.Is(err, ledger.ErrLockBusy):
		return "lock_busy"
	case errors.Is(err, ledger.ErrAlreadyReversed):
		return "already_reversed"
	case errors.Is(err, ledger.ErrSameAccount), errors.Is(err, ledger.ErrCurrencyMismatch),
		errors.Is(err, ledger.ErrInvalidAmount), errors.Is(err, ledger.ErrInvalidInput):
		return "invalid"
	}
	return "error"
}
