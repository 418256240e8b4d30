package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/daybook/daybook/logevent"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// accountsPageSize is how many accounts one page reads and folds at once:
// memory holds one page of summaries and its fold states, never the log.
const accountsPageSize = 500

// figurePlaces is how many places figures are printed with: numeric(20,4).
const figurePlaces = 4

// account is one account's three views, as one page reads them.
type account struct {
	id            string
	allowNegative bool
	hasBalance    bool
	balance       decimal.Decimal // account_balances.balance
	version       int64           // account_balances.version
	entries       decimal.Decimal // Σ ledger_entries.amount
	fold          fold
}

// fold is the running state of one account stream.
type fold struct {
	balance     decimal.Decimal
	lastVersion int64
	// broken is set once the stream is malformed; the fold keeps adding
	// postings, but only the first structural fault is reported.
	broken bool
}

// checkAccounts pages through accounts in id order and checks each page.
func checkAccounts(ctx context.Context, q Querier, r *Report) error {
	after := "00000000-0000-0000-0000-000000000000"
	for {
		page, err := readAccounts(ctx, q, after)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		if err := foldStreams(ctx, q, page, r); err != nil {
			return err
		}
		for _, a := range page {
			compareAccount(a, r)
		}
		r.Accounts += len(page)
		if len(page) < accountsPageSize {
			return nil
		}
		after = page[len(page)-1].id
	}
}

// readAccounts reads the page of accounts after the id after: each one's
// balance row (if any) and the sum of its entries, as exact numeric text.
func readAccounts(ctx context.Context, q Querier, after string) ([]*account, error) {
	rows, err := q.Query(ctx, `
		SELECT a.id::text, a.allow_negative, b.balance::text, b.version,
		       (SELECT coalesce(sum(e.amount), 0)::text FROM ledger_entries e WHERE e.account_id = a.id)
		FROM accounts a LEFT JOIN account_balances b ON b.account_id = a.id
		WHERE a.id > $1::uuid
		ORDER BY a.id
		LIMIT $2`, after, accountsPageSize)
	if err != nil {
		return nil, fmt.Errorf("read accounts after %s: %w", after, err)
	}
	page, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*account, error) {
		var (
			a       account
			balance *string
			version *int64
			entries string
		)
		if err := row.Scan(&a.id, &a.allowNegative, &balance, &version, &entries); err != nil {
			return nil, err
		}
		var err error
		if a.entries, err = decimal.NewFromString(entries); err != nil {
			return nil, fmt.Errorf("entries of %s: %w", a.id, err)
		}
		if balance != nil && version != nil {
			a.hasBalance, a.version = true, *version
			if a.balance, err = decimal.NewFromString(*balance); err != nil {
				return nil, fmt.Errorf("balance of %s: %w", a.id, err)
			}
		}
		return &a, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read accounts after %s: %w", after, err)
	}
	return page, nil
}

// foldStreams reads the streams of one page of accounts in version order,
// row by row, folding each into its account and reporting malformed
// streams and postings whose recorded balance disagrees with the fold.
func foldStreams(ctx context.Context, q Querier, page []*account, r *Report) error {
	byStream := make(map[string]*account, len(page))
	streams := make([]string, 0, len(page))
	for _, a := range page {
		s := logevent.AccountStreamPrefix + a.id
		byStream[s] = a
		streams = append(streams, s)
	}
	rows, err := q.Query(ctx, `
		SELECT stream_id, stream_version, event_type, data::text
		FROM event_log
		WHERE stream_id = ANY($1::text[])
		ORDER BY stream_id, stream_version`, streams)
	if err != nil {
		return fmt.Errorf("read account streams: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			stream, typ, data string
			version           int64
		)
		if err := rows.Scan(&stream, &version, &typ, &data); err != nil {
			return fmt.Errorf("read account streams: %w", err)
		}
		a := byStream[stream]
		if a == nil {
			return fmt.Errorf("read account streams: unasked-for stream %s", stream)
		}
		applyEvent(a, version, typ, data, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read account streams: %w", err)
	}
	return nil
}

// applyEvent folds one event of a's stream into a.fold.
func applyEvent(a *account, version int64, typ, data string, r *Report) {
	f := &a.fold
	broken := func(format string, args ...any) {
		if !f.broken {
			f.broken = true
			r.add(Mismatch{Kind: KindEventStream, AccountID: a.id, Detail: fmt.Sprintf("version %d: ", version) + fmt.Sprintf(format, args...)})
		}
	}
	if version != f.lastVersion+1 {
		broken("follows version %d", f.lastVersion)
	}
	f.lastVersion = version
	switch typ {
	case logevent.TypeAccountOpened:
		if version != 1 {
			broken("%s again", typ)
		}
		f.balance = decimal.Zero
		return
	case logevent.TypeAccountDebited, logevent.TypeAccountCredited:
	default:
		broken("unexpected event type %s", typ)
		return
	}
	if version == 1 {
		broken("stream opens with %s, want %s", typ, logevent.TypeAccountOpened)
	}
	var p logevent.AccountPosting
	if err := json.Unmarshal([]byte(data), &p); err != nil {
		broken("%s data: %v", typ, err)
		return
	}
	if p.AccountID.String() != a.id {
		broken("%s names account %s", typ, p.AccountID)
	}
	amount, err := decimal.NewFromString(p.Amount)
	if err != nil {
		broken("%s amount %q: %v", typ, p.Amount, err)
		return
	}
	if (typ == logevent.TypeAccountDebited) != amount.IsNegative() {
		broken("%s with amount %s", typ, p.Amount)
	}
	f.balance = f.balance.Add(amount)
	recorded, err := decimal.NewFromString(p.Balance)
	if err != nil {
		broken("%s balance %q: %v", typ, p.Balance, err)
		return
	}
	if !recorded.Equal(f.balance) {
		r.add(Mismatch{Kind: KindEventPosting, AccountID: a.id, Detail: fmt.Sprintf(
			"version %d: recorded balance %s, fold %s", version, figure(recorded), figure(f.balance))})
	}
}

// compareAccount compares a's three views once its stream is folded.
func compareAccount(a *account, r *Report) {
	if !a.hasBalance {
		r.add(Mismatch{Kind: KindBalanceMissing, AccountID: a.id, Detail: fmt.Sprintf(
			"no account_balances row: entries %s, events %s", figure(a.entries), figure(a.fold.balance))})
	} else {
		if !a.balance.Equal(a.entries) {
			r.add(Mismatch{Kind: KindBalanceProjection, AccountID: a.id, Detail: a.figures()})
		}
		if a.version != a.fold.lastVersion {
			r.add(Mismatch{Kind: KindVersion, AccountID: a.id, Detail: fmt.Sprintf(
				"projection version %d, stream version %d", a.version, a.fold.lastVersion)})
		}
	}
	if a.fold.lastVersion == 0 {
		r.add(Mismatch{Kind: KindEventStream, AccountID: a.id, Detail: "no events: want " + logevent.TypeAccountOpened})
	}
	if !a.fold.balance.Equal(a.entries) {
		r.add(Mismatch{Kind: KindEventFold, AccountID: a.id, Detail: a.figures()})
	}
	if !a.allowNegative && (a.entries.IsNegative() || a.balance.IsNegative() || a.fold.balance.IsNegative()) {
		r.add(Mismatch{Kind: KindNegativeBalance, AccountID: a.id, Detail: "allow_negative false: " + a.figures()})
	}
}

// figures names the three views of a's balance.
func (a *account) figures() string {
	projection := "none"
	if a.hasBalance {
		projection = figure(a.balance)
	}
	return fmt.Sprintf("entries %s, projection %s, events %s", figure(a.entries), projection, figure(a.fold.balance))
}

func figure(d decimal.Decimal) string { return d.StringFixed(figurePlaces) }

// checkOrphanStreams reports account streams whose account does not exist.
func checkOrphanStreams(ctx context.Context, q Querier, r *Report) error {
	rows, err := q.Query(ctx, `
		SELECT DISTINCT e.stream_id
		FROM event_log e
		WHERE e.stream_id LIKE 'account-%'
		  AND NOT EXISTS (SELECT 1 FROM accounts a WHERE 'account-' || a.id::text = e.stream_id)
		ORDER BY e.stream_id
		LIMIT $1`, mismatchesMax+1)
	if err != nil {
		return fmt.Errorf("read orphan streams: %w", err)
	}
	streams, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("read orphan streams: %w", err)
	}
	for _, s := range streams {
		r.add(Mismatch{Kind: KindOrphanStream, AccountID: strings.TrimPrefix(s, logevent.AccountStreamPrefix), Detail: "stream " + s + " has no account"})
	}
	return nil
}
