package ledger

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/logevent"
)

// DefaultCurrency is an account's currency when none is given.
const DefaultCurrency = "USD"

// accountNameMax is the longest account name, in characters.
const accountNameMax = 200

// openedVersion is a new account's version: its stream holds one event,
// logevent.TypeAccountOpened.
const openedVersion int64 = 1

var currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)

// Account is an account with its balance.
type Account struct {
	ID       uuid.UUID
	Name     string
	Currency string
	// AllowNegative marks an account that may go below zero: an external
	// (world) account through which money enters the ledger.
	AllowNegative bool
	// APIKeyID is the key that opened the account; "" when authentication was off.
	APIKeyID string
	Balance  decimal.Decimal
	// Version counts the events of the account's stream (AccountStream).
	Version   int64
	CreatedAt time.Time
}

// CreateAccountParams describes a new account.
type CreateAccountParams struct {
	// Name is 1 to 200 characters, not all blank.
	Name string
	// Currency is an ISO 4217 style code of three upper-case letters;
	// empty means DefaultCurrency.
	Currency      string
	AllowNegative bool
	// APIKeyID records who asked.
	APIKeyID string
}

func (p CreateAccountParams) validate() (CreateAccountParams, error) {
	if p.Currency == "" {
		p.Currency = DefaultCurrency
	}
	if err := checkCurrency(p.Currency); err != nil {
		return p, err
	}
	n := utf8.RuneCountInString(p.Name)
	if !utf8.ValidString(p.Name) || strings.TrimSpace(p.Name) == "" || n > accountNameMax || strings.ContainsRune(p.Name, 0) {
		return p, fmt.Errorf("account name must be 1 to %d characters of UTF-8 without NUL, not all blank: %w", accountNameMax, ErrInvalidInput)
	}
	return p, nil
}

func checkCurrency(c string) error {
	if !currencyPattern.MatchString(c) {
		return fmt.Errorf("currency %.10q must be three upper-case letters: %w", c, ErrInvalidInput)
	}
	return nil
}

// CreateAccount opens an account with a zero balance: the account, its
// balance row and logevent.TypeAccountOpened on its stream, in one transaction.
func (s *Service) CreateAccount(ctx context.Context, p CreateAccountParams) (Account, error) {
	p, err := p.validate()
	if err != nil {
		return Account{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Account{}, fmt.Errorf("new account id: %w", err)
	}
	opened, err := newEvent(logevent.TypeAccountOpened, logevent.AccountOpened{
		AccountID: id, Name: p.Name, Currency: p.Currency, AllowNegative: p.AllowNegative,
	})
	if err != nil {
		return Account{}, err
	}
	var account Account
	err = withRetry(ctx, s.cfg, func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			inserted, err := insertAccountTx(ctx, tx, id, p, openedVersion)
			if err != nil {
				return err
			}
			recorded, err := eventstore.AppendTx(ctx, tx, logevent.AccountStream(id), eventstore.ExpectNew, opened)
			if err != nil {
				return fmt.Errorf("append %s: %w", logevent.TypeAccountOpened, err)
			}
			if recorded[0].Version != inserted.Version {
				return fmt.Errorf("ledger invariant: account %s opened at stream version %d, balance version %d",
					id, recorded[0].Version, inserted.Version)
			}
			account = inserted
			return nil
		})
	})
	if err != nil {
		return Account{}, fmt.Errorf("create account: %w", err)
	}
	return account, nil
}

// GetAccount returns an account with its current balance and version.
func (s *Service) GetAccount(ctx context.Context, id uuid.UUID) (Account, error) {
	return getAccount(ctx, s.pool, id)
}
