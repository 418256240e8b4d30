package reconcile

import (
	"context"
	"fmt"

	"github.com/daybook/daybook/logevent"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// checkLedgerTotal requires all entries to sum to zero, and counts transfers.
func checkLedgerTotal(ctx context.Context, q Querier, r *Report) error {
	var total string
	err := q.QueryRow(ctx, `
		SELECT coalesce(sum(amount), 0)::text, (SELECT count(*) FROM transfers)
		FROM ledger_entries`).Scan(&total, &r.Transfers)
	if err != nil {
		return fmt.Errorf("sum entries: %w", err)
	}
	d, err := decimal.NewFromString(total)
	if err != nil {
		return fmt.Errorf("sum entries %q: %w", total, err)
	}
	if !d.IsZero() {
		r.add(Mismatch{Kind: KindLedgerTotal, Detail: fmt.Sprintf("entries sum to %s, want 0.0000", figure(d))})
	}
	return nil
}

// unbalancedTransactionsSQL selects every transfer whose entries are not
// exactly a debit of its amount on its from account and a credit of it on
// its to account, with what it has instead. The database refuses writing
// such data (a deferred trigger), so only a broken trigger or a hand edit
// can make this return rows.
const unbalancedTransactionsSQL = `
	SELECT t.id::text, t.amount::text, count(e.id), coalesce(sum(e.amount), 0)::text,
	       count(e.id) FILTER (WHERE e.account_id = t.from_account_id AND e.amount = -t.amount AND e.direction = 'debit'),
	       count(e.id) FILTER (WHERE e.account_id = t.to_account_id AND e.amount = t.amount AND e.direction = 'credit')
	FROM transfers t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
	GROUP BY t.id
	HAVING count(e.id) <> 2
	    OR coalesce(sum(e.amount), 0) <> 0
	    OR count(e.id) FILTER (WHERE e.account_id = t.from_account_id AND e.amount = -t.amount AND e.direction = 'debit') <> 1
	    OR count(e.id) FILTER (WHERE e.account_id = t.to_account_id AND e.amount = t.amount AND e.direction = 'credit') <> 1
	ORDER BY t.id
	LIMIT $1`

// checkTransactions reports transfers whose entries do not balance or do not
// match the transfer. Entries always belong to a transfer (a foreign key).
func checkTransactions(ctx context.Context, q Querier, r *Report) error {
	rows, err := q.Query(ctx, unbalancedTransactionsSQL, mismatchesMax+1)
	if err != nil {
		return fmt.Errorf("read unbalanced transactions: %w", err)
	}
	type unbalanced struct {
		id, amount, sum string
		n, debits, cred int
	}
	found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (unbalanced, error) {
		var u unbalanced
		err := row.Scan(&u.id, &u.amount, &u.n, &u.sum, &u.debits, &u.cred)
		return u, err
	})
	if err != nil {
		return fmt.Errorf("read unbalanced transactions: %w", err)
	}
	for _, u := range found {
		r.add(Mismatch{Kind: KindTransaction, TransferID: u.id, Detail: fmt.Sprintf(
			"%d entries summing to %s with %d matching debits and %d matching credits; want 2 entries, -%s on from and +%s on to",
			u.n, u.sum, u.debits, u.cred, u.amount, u.amount)})
	}
	return nil
}

// checkTransferEvents reports transfers without a ledger.transfer_completed
// event on transfer-<id> that agrees with them on accounts and amount.
func checkTransferEvents(ctx context.Context, q Querier, r *Report) error {
	rows, err := q.Query(ctx, `
		SELECT t.id::text, t.amount::text, ev.events, ev.agreed
		FROM transfers t
		CROSS JOIN LATERAL (
			SELECT count(*) AS events,
			       count(*) FILTER (WHERE e.data->>'transfer_id' = t.id::text
			           AND e.data->>'from_account_id' = t.from_account_id::text
			           AND e.data->>'to_account_id' = t.to_account_id::text
			           AND CASE WHEN e.data->>'amount' ~ '^-?[0-9]{1,16}(\.[0-9]{1,16})?$'
			                    THEN (e.data->>'amount')::numeric = t.amount END) AS agreed
			FROM event_log e
			WHERE e.stream_id = 'transfer-' || t.id::text AND e.event_type = $2
		) ev
		WHERE ev.events <> 1 OR ev.agreed <> 1
		ORDER BY t.id
		LIMIT $1`, mismatchesMax+1, logevent.TypeTransferCompleted)
	if err != nil {
		return fmt.Errorf("read transfer events: %w", err)
	}
	type missing struct {
		id, amount     string
		events, agreed int
	}
	found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (missing, error) {
		var m missing
		err := row.Scan(&m.id, &m.amount, &m.events, &m.agreed)
		return m, err
	})
	if err != nil {
		return fmt.Errorf("read transfer events: %w", err)
	}
	for _, m := range found {
		r.add(Mismatch{Kind: KindTransferEvent, TransferID: m.id, Detail: fmt.Sprintf(
			"%d ledger.transfer_completed events on transfer-%s, %d agreeing with the transfer (amount %s); want exactly 1",
			m.events, m.id, m.agreed, m.amount)})
	}
	return nil
}
