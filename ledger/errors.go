package ledger

import "errors"

// Errors of the ledger. The api package maps them to status codes; each is
// returned wrapped with context, so compare with errors.Is.
var (
	ErrAccountNotFound  = errors.New("account not found")
	ErrTransferNotFound = errors.New("transfer not found")
	// ErrInsufficientFunds: the debit would take an account that does not
	// allow a negative balance below zero. Nothing was written.
	ErrInsufficientFunds = errors.New("insufficient funds")
	// ErrIdempotencyConflict: the idempotency key belongs to a different request.
	ErrIdempotencyConflict = errors.New("idempotency key was used for a different request")
	ErrSameAccount         = errors.New("from and to are the same account")
	ErrCurrencyMismatch    = errors.New("currency mismatch")
	// ErrInvalidAmount: not a positive amount of at most 4 decimal places
	// and at most AmountMaxText, or one that would take a balance out of range.
	ErrInvalidAmount = errors.New("invalid amount")
	// ErrInvalidInput: any other malformed parameter (name, currency code,
	// idempotency key, metadata); the wrapping message names it.
	ErrInvalidInput    = errors.New("invalid input")
	ErrAlreadyReversed = errors.New("transfer is already reversed")
	// ErrLockBusy: the Redis account lock could not be had within
	// Config.LockWait. Nothing was written; the client may retry.
	ErrLockBusy = errors.New("account is busy")
)
