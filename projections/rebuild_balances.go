package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/logevent"
)

// accountEvents are the events of an account's stream (logevent).
var accountEvents = []string{logevent.TypeAccountOpened, logevent.TypeAccountDebited, logevent.TypeAccountCredited}

// RebuildBalances rebuilds account_balances from the account streams: each
// account opens at 0 and adds the signed amount of every posting, its version
// following the stream. The fresh table is verified against the ledger
// entries (balance = their sum) and the log (version = the stream's last),
// then the live table is corrected in place in one transaction: it carries
// foreign keys and CHECKs, so it is never dropped or renamed (see
// runRebuild). progress may be nil.
func RebuildBalances(ctx context.Context, pool *pgxpool.Pool, progress Progress) (RebuildReport, error) {
	return runRebuild(ctx, pool, rebuilder{
		name:  ProjectionBalances,
		live:  "account_balances",
		fresh: "account_balances_rebuild",
		types: accountEvents,
		// Defaults and the primary key only: the foreign key and CHECKs are
		// the live table's to hold when the result is swapped in.
		create: `CREATE TEMP TABLE account_balances_rebuild (LIKE account_balances INCLUDING DEFAULTS INCLUDING INDEXES)`,
		fold:   foldBalancesTx,
		verify: verifyBalancesTx,
		swap:   swapBalancesTx,
	}, progress)
}

// foldBalancesTx opens the page's new accounts, then adds each account's
// postings. Within one account, versions must follow on from the folded
// version without a gap: a missed event fails the fold.
func foldBalancesTx(ctx context.Context, tx pgx.Tx, page []eventstore.Recorded) error {
	var openIDs []uuid.UUID
	var openCurrencies []string
	var openNegative []bool
	var openVersions []int64
	var postIDs []uuid.UUID
	var postAmounts []string
	var postVersions []int64
	for _, e := range page {
		var opened logevent.AccountOpened
		var posting logevent.AccountPosting
		var data any = &posting
		if e.Type == logevent.TypeAccountOpened {
			data = &opened
		}
		if err := json.Unmarshal(e.Data, data); err != nil {
			return fmt.Errorf("decode %s at position %d: %w", e.Type, e.Position, err)
		}
		accountID := posting.AccountID
		if e.Type == logevent.TypeAccountOpened {
			accountID = opened.AccountID
		}
		if accountID == uuid.Nil || e.StreamID != logevent.AccountStream(accountID) {
			return fmt.Errorf("%s at position %d: account %s is not its stream %s", e.Type, e.Position, accountID, e.StreamID)
		}
		switch e.Type {
		case logevent.TypeAccountOpened:
			openIDs, openCurrencies = append(openIDs, opened.AccountID), append(openCurrencies, opened.Currency)
			openNegative, openVersions = append(openNegative, opened.AllowNegative), append(openVersions, e.Version)
		default:
			neg := strings.HasPrefix(posting.Amount, "-")
			if posting.Amount == "" || neg != (e.Type == logevent.TypeAccountDebited) {
				return fmt.Errorf("%s at position %d: amount %q has the wrong sign", e.Type, e.Position, posting.Amount)
			}
			postIDs, postAmounts, postVersions = append(postIDs, posting.AccountID), append(postAmounts, posting.Amount), append(postVersions, e.Version)
		}
	}
	if len(openIDs) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO account_balances_rebuild (account_id, currency, allow_negative, balance, version)
			SELECT id, currency, allow_negative, 0, version
			FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::bigint[]) AS o (id, currency, allow_negative, version)`,
			openIDs, openCurrencies, openNegative, openVersions); err != nil {
			return fmt.Errorf("fold %d account openings: %w", len(openIDs), err)
		}
	}
	if len(postIDs) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `WITH page AS (
			SELECT id, sum(amount) AS amount, min(version) AS first, max(version) AS last, count(*) AS n
			FROM unnest($1::uuid[], $2::numeric[], $3::bigint[]) AS p (id, amount, version)
			GROUP BY id
		), folded AS (
			UPDATE account_balances_rebuild b SET balance = b.balance + page.amount, version = page.last
			FROM page
			WHERE b.account_id = page.id AND page.first = b.version + 1 AND page.last = b.version + page.n
			RETURNING b.account_id
		)
		SELECT page.id::text FROM page WHERE page.id NOT IN (SELECT account_id FROM folded) ORDER BY 1`,
		postIDs, postAmounts, postVersions)
	if err != nil {
		return fmt.Errorf("fold %d postings: %w", len(postIDs), err)
	}
	unfolded, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("fold %d postings: %w", len(postIDs), err)
	}
	if len(unfolded) > 0 {
		return fmt.Errorf("postings of accounts %s are not opened or skip a version: %w", strings.Join(unfolded, ", "), ErrRebuildMismatch)
	}
	return nil
}

// verifyBalancesTx checks the fresh balances by routes apart from the fold:
// each balance is the sum of the account's ledger entries, each version the
// last version of its stream, and every account stream has a balance.
func verifyBalancesTx(ctx context.Context, tx pgx.Tx) error {
	if err := mismatches(ctx, tx, "account_balances_rebuild vs ledger_entries", `
		SELECT coalesce(r.account_id, e.account_id)::text
		FROM account_balances_rebuild r
		FULL JOIN (SELECT account_id, sum(amount) AS total FROM ledger_entries GROUP BY account_id) e ON e.account_id = r.account_id
		WHERE r.account_id IS NULL OR r.balance <> coalesce(e.total, 0)
		ORDER BY 1`); err != nil {
		return err
	}
	return mismatches(ctx, tx, "account_balances_rebuild vs the account streams", `
		SELECT coalesce(r.account_id::text, s.stream_id)
		FROM account_balances_rebuild r
		FULL JOIN (SELECT stream_id, max(stream_version) AS version FROM event_log
		           WHERE stream_id LIKE $1 || '%' AND event_type = ANY($2) GROUP BY stream_id) s
		       ON s.stream_id = $1 || r.account_id::text
		WHERE r.version IS DISTINCT FROM s.version
		ORDER BY 1`, logevent.AccountStreamPrefix, accountEvents)
}

func swapBalancesTx(ctx context.Context, tx pgx.Tx) (int64, error) {
	var changed int64
	for _, q := range []string{
		`UPDATE account_balances b SET balance = r.balance, version = r.version, updated_at = now()
			FROM account_balances_rebuild r
			WHERE b.account_id = r.account_id AND (b.balance, b.version) IS DISTINCT FROM (r.balance, r.version)`,
		`INSERT INTO account_balances (account_id, currency, allow_negative, balance, version)
			SELECT r.account_id, r.currency, r.allow_negative, r.balance, r.version FROM account_balances_rebuild r
			WHERE NOT EXISTS (SELECT 1 FROM account_balances b WHERE b.account_id = r.account_id)`,
		`DELETE FROM account_balances b WHERE NOT EXISTS (SELECT 1 FROM account_balances_rebuild r WHERE r.account_id = b.account_id)`,
	} {
		tag, err := tx.Exec(ctx, q)
		if err != nil {
			return 0, err
		}
		changed += tag.RowsAffected()
	}
	return changed, nil
}
