package reconcile

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
)

// Kinds of Mismatch.
const (
	// KindBalanceProjection: account_balances.balance differs from the sum of
	// the account's entries.
	KindBalanceProjection = "balance_projection"
	// KindBalanceMissing: an account has no account_balances row.
	KindBalanceMissing = "balance_missing"
	// KindEventFold: the fold of the account's postings differs from the sum
	// of its entries.
	KindEventFold = "event_fold"
	// KindEventPosting: a posting's recorded balance-after differs from the
	// fold up to and including it.
	KindEventPosting = "event_posting"
	// KindEventStream: the account's stream is malformed: it does not open
	// with ledger.account_opened, skips a version, holds an unknown event
	// type, or a posting's data cannot be read or names another account.
	KindEventStream = "event_stream"
	// KindOrphanStream: an account-<id> stream whose account does not exist.
	KindOrphanStream = "orphan_stream"
	// KindVersion: account_balances.version differs from the stream's last
	// version.
	KindVersion = "version"
	// KindNegativeBalance: an account without allow_negative is below zero in
	// at least one of the three views.
	KindNegativeBalance = "negative_balance"
	// KindLedgerTotal: the entries of the whole ledger do not sum to zero.
	KindLedgerTotal = "ledger_total"
	// KindTransaction: a transfer does not have exactly two entries, a debit
	// of its amount on its from account and a credit on its to account.
	KindTransaction = "transaction"
	// KindTransferEvent: a transfer has no ledger.transfer_completed event on
	// transfer-<id>, or that event disagrees with the transfer.
	KindTransferEvent = "transfer_event"
)

// mismatchesMax bounds the mismatches one run keeps; beyond it they are only
// counted (Report.Omitted), so that a wrecked ledger cannot exhaust memory.
const mismatchesMax = 10_000

// Mismatch is one disagreement. AccountID or TransferID names its subject;
// both are empty for ledger-wide checks.
type Mismatch struct {
	Kind       string
	AccountID  string
	TransferID string
	// Detail gives the figures: for account kinds, all three views.
	Detail string
}

// Report is the outcome of Run.
type Report struct {
	Accounts   int
	Transfers  int
	Mismatches []Mismatch
	// Omitted counts mismatches found beyond mismatchesMax and not kept. The
	// SQL checks stop looking after mismatchesMax+1 rows each, so past the
	// limit it is a lower bound.
	Omitted int
}

// Count is the number of mismatches found, kept or not.
func (r Report) Count() int { return len(r.Mismatches) + r.Omitted }

func (r *Report) add(m Mismatch) {
	if len(r.Mismatches) >= mismatchesMax {
		r.Omitted++
		return
	}
	r.Mismatches = append(r.Mismatches, m)
}

// Write prints the report: one summary line, then one line per mismatch.
func (r Report) Write(w io.Writer) error {
	status := "OK"
	if r.Count() > 0 {
		status = "MISMATCH"
	}
	if _, err := fmt.Fprintf(w, "%s: %d accounts, %d transfers, %d mismatches\n", status, r.Accounts, r.Transfers, r.Count()); err != nil {
		return err
	}
	for _, m := range r.Mismatches {
		subject := "ledger"
		switch {
		case m.AccountID != "":
			subject = "account " + m.AccountID
		case m.TransferID != "":
			subject = "transfer " + m.TransferID
		}
		if _, err := fmt.Fprintf(w, "%s  %s  %s\n", m.Kind, subject, m.Detail); err != nil {
			return err
		}
	}
	if r.Omitted > 0 {
		if _, err := fmt.Fprintf(w, "... and %d more mismatches not listed\n", r.Omitted); err != nil {
			return err
		}
	}
	return nil
}

// Querier is what Run reads through: a pool or connection (Run then begins
// its own snapshot transaction) or a transaction the caller holds.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// txBeginner is a Querier that can begin a transaction with options:
// *pgxpool.Pool and *pgx.Conn are; pgx.Tx is not.
type txBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Run checks the whole ledger and reports every mismatch. It returns an error
// only when it cannot read; a mismatch is not an error. Given a pool or a
// connection it reads in its own REPEATABLE READ, read-only transaction;
// given a transaction, it reads that transaction's snapshot.
func Run(ctx context.Context, db Querier) (Report, error) {
	q := db
	if b, ok := db.(txBeginner); ok {
		tx, err := b.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return Report{}, fmt.Errorf("reconcile: begin snapshot: %w", err)
		}
		// Read-only: rolling back discards nothing.
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		q = tx
	}
	var r Report
	checks := []struct {
		name string
		run  func(context.Context, Querier, *Report) error
	}{
		{"accounts", checkAccounts},
		{"orphan streams", checkOrphanStreams},
		{"ledger total", checkLedgerTotal},
		{"transactions", checkTransactions},
		{"transfer events", checkTransferEvents},
	}
	for _, c := range checks {
		if err := c.run(ctx, q, &r); err != nil {
			return Report{}, fmt.Errorf("reconcile %s: %w", c.name, err)
		}
	}
	return r, nil
}
