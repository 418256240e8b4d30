package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/logevent"
)

// book is a small realistic ledger written through ledger.Service: a world
// account funds alice with 100, alice pays bob 30, and a 5 payment from bob
// to alice is reversed. Balances: alice 70, bob 30, world -100.
type book struct {
	pool              *pgxpool.Pool
	svc               *ledger.Service
	world, alice, bob ledger.Account
	transfers         int
}

func newBook(t *testing.T) *book {
	t.Helper()
	pool := testdb.New(t)
	svc, err := ledger.NewService(pool, ledger.Config{})
	require.NoError(t, err)
	b := &book{pool: pool, svc: svc}
	b.world = b.open(t, "world", true)
	b.alice = b.open(t, "alice", false)
	b.bob = b.open(t, "bob", false)
	b.move(t, b.world.ID, b.alice.ID, "100")
	b.move(t, b.alice.ID, b.bob.ID, "30")
	tr := b.move(t, b.bob.ID, b.alice.ID, "5")
	_, created, err := svc.Reverse(t.Context(), ledger.ReverseParams{TransferID: tr.ID, IdempotencyKey: uuid.NewString()})
	require.NoError(t, err)
	require.True(t, created)
	b.transfers++
	return b
}

func (b *book) open(t *testing.T, name string, allowNegative bool) ledger.Account {
	t.Helper()
	a, err := b.svc.CreateAccount(t.Context(), ledger.CreateAccountParams{Name: name, AllowNegative: allowNegative})
	require.NoError(t, err)
	return a
}

func (b *book) move(t *testing.T, from, to uuid.UUID, amount string) ledger.Transfer {
	t.Helper()
	d, err := ledger.ParseAmount(amount)
	require.NoError(t, err)
	tr, created, err := b.svc.Transfer(t.Context(), ledger.TransferParams{From: from, To: to, Amount: d, IdempotencyKey: uuid.NewString()})
	require.NoError(t, err)
	require.True(t, created)
	b.transfers++
	return tr
}

// appendPosting appends a posting to an account's stream at its current end,
// bypassing the ledger: what a buggy writer or a hand edit would leave.
func (b *book) appendPosting(t *testing.T, typ string, account uuid.UUID, amount, balance string) {
	t.Helper()
	data, err := json.Marshal(logevent.AccountPosting{
		AccountID: account, TransferID: uuid.New(), EntryID: uuid.New(), Amount: amount, Balance: balance, Currency: "USD",
	})
	require.NoError(t, err)
	b.appendEvent(t, logevent.AccountStream(account), eventstore.NewEvent{Type: typ, Data: data})
}

func (b *book) appendEvent(t *testing.T, stream string, e eventstore.NewEvent) {
	t.Helper()
	ctx := t.Context()
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		v, err := eventstore.StreamVersion(ctx, tx, stream)
		if err != nil {
			return err
		}
		_, err = eventstore.AppendTx(ctx, tx, stream, v, e)
		return err
	}))
}

func (b *book) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := b.pool.Exec(t.Context(), sql, args...)
	require.NoError(t, err)
}

func run(t *testing.T, db Querier) (Report, string) {
	t.Helper()
	r, err := Run(t.Context(), db)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, r.Write(&out))
	return r, out.String()
}

func TestRun_CleanLedgerHasNoMismatches(t *testing.T) {
	t.Parallel()
	b := newBook(t)

	r, out := run(t, b.pool)

	require.Equal(t, Report{Accounts: 3, Transfers: 4}, r)
	require.Equal(t, "OK: 3 accounts, 4 transfers, 0 mismatches\n", out)
}

func TestRun_EmptyLedgerIsClean(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)

	r, out := run(t, pool)

	require.Equal(t, Report{}, r)
	require.Equal(t, "OK: 0 accounts, 0 transfers, 0 mismatches\n", out)
}

func TestRun_PlantedProjectionBalanceIsOneMismatchNamingTheAccount(t *testing.T) {
	t.Parallel()
	b := newBook(t)
	b.exec(t, `UPDATE account_balances SET balance = balance + 1 WHERE account_id = $1`, b.alice.ID)

	r, out := run(t, b.pool)

	want := Mismatch{Kind: KindBalanceProjection, AccountID: b.alice.ID.String(),
		Detail: "entries 70.0000, projection 71.0000, events 70.0000"}
	require.Equal(t, []Mismatch{want}, r.Mismatches)
	require.Equal(t, 1, r.Count())
	require.Equal(t, "MISMATCH: 3 accounts, 4 transfers, 1 mismatches\n"+
		"balance_projection  account "+b.alice.ID.String()+"  entries 70.0000, projection 71.0000, events 70.0000\n", out)
}

func TestRun_ProjectionVersionDriftIsReported(t *testing.T) {
	t.Parallel()
	b := newBook(t)
	// bob: opened (1), credited 30 (2), debited 5 (3), credited 5 (4).
	b.exec(t, `UPDATE account_balances SET version = version + 1 WHERE account_id = $1`, b.bob.ID)

	r, out := run(t, b.pool)

	require.Equal(t, []Mismatch{{Kind: KindVersion, AccountID: b.bob.ID.String(),
		Detail: "projection version 5, stream version 4"}}, r.Mismatches)
	require.Equal(t, "MISMATCH: 3 accounts, 4 transfers, 1 mismatches\n"+
		"version  account "+b.bob.ID.String()+"  projection version 5, stream version 4\n", out)
}

func TestRun_ExtraPostingEventBreaksTheFold(t *testing.T) {
	t.Parallel()
	b := newBook(t)
	// Internally consistent (70 + 5 = 75) but matched by no entry.
	b.appendPosting(t, logevent.TypeAccountCredited, b.alice.ID, "5.0000", "75.0000")

	r, out := run(t, b.pool)

	id := b.alice.ID.String()
	require.Equal(t, []Mismatch{
		{Kind: KindVersion, AccountID: id, Detail: "projection version 5, stream version 6"},
		{Kind: KindEventFold, AccountID: id, Detail: "entries 70.0000, projection 70.0000, events 75.0000"},
	}, r.Mismatches)
	require.Equal(t, "MISMATCH: 3 accounts, 4 transfers, 2 mismatches\n"+
		"version  account "+id+"  projection version 5, stream version 6\n"+
		"event_fold  account "+id+"  entries 70.0000, projection 70.0000, events 75.0000\n", out)
}

func TestRun_PostingWhoseBalanceAfterDisagreesWithTheFold(t *testing.T) {
	t.Parallel()
	b := newBook(t)
	// A zero credit leaves the fold at 30, but says the balance is 32.
	b.appendPosting(t, logevent.TypeAccountCredited, b.bob.ID, "0.0000", "32.0000")

	r, _ := run(t, b.pool)

	id := b.bob.ID.String()
	require.Equal(t, []Mismatch{
		{Kind: KindEventPosting, AccountID: id, Detail: "version 5: recorded balance 32.0000, fold 30.0000"},
		{Kind: KindVersion, AccountID: id, Detail: "projection version 4, stream version 5"},
	}, r.Mismatches)
}

func TestRun_FoldBelowZeroOnAccountWithoutOverdraft(t *testing.T) {
	t.Parallel()
	b := newBook(t)
	b.appendPosting(t, logevent.TypeAccountDebited, b.bob.ID, "-40.0000", "-10.0000")

	r, _ := run(t, b.pool)

	id := b.bob.ID.String()
	require.Equal(t, []Mismatch{
		{Kind: KindVersion, AccountID: id, Detail: "projection version 4, stream version 5"},
		{Kind: KindEventFold, AccountID: id, Detail: "entries 30.0000, projection 30.0000, events -10.0000"},
		{Kind: KindNegativeBalance, AccountID: id, Detail: "allow_negative false: entries 30.0000, projection 30.0000, events -10.0000"},
	}, r.Mismatches)
}

func TestRun_MalformedAccountStreamIsReportedOnce(t *testing.T) {
	t.Parallel()
	b := newBook(t)
	b.appendEvent(t, logevent.AccountStream(b.alice.ID), eventstore.NewEvent{Type: "ledger.account_frozen", Data: []byte(`{}`)})
	b.appendPosting(t, logevent.TypeAccountDebited, b.alice.ID, "1.0000", "71.0000") // a debit must be negative

	r, _ := run(t, b.pool)

	id := b.alice.ID.String()
	require.Equal(t, []Mismatch{
		{Kind: KindEventStream, AccountID: id, Detail: "version 6: unexpected event type ledger.account_frozen"},
		{Kind: KindVersion, AccountID: id, Detail: "projection version 5, stream version 7"},
		{Kind: KindEventFold, AccountID: id, Detail: "entries 70.0000, projection 70.0000, events 71.0000"},
	}, r.Mismatches)
}

func TestRun_StreamWithoutAccountIsAnOrphan(t *testing.T) {
	t.Parallel()
	b := newBook(t)
	ghost := uuid.New()
	b.appendEvent(t, logevent.AccountStream(ghost), eventstore.NewEvent{Type: logevent.TypeAccountOpened, Data: []byte(`{}`)})

	r, _ := run(t, b.pool)

	require.Equal(t, []Mismatch{{Kind: KindOrphanStream, AccountID: ghost.String(),
		Detail: "stream account-" + ghost.String() + " has no account"}}, r.Mismatches)
}

// A transfer written by hand, balanced (so the database takes it) but split
// into three entries and without events or projection updates, trips every
// check that can see it.
func TestRun_HandWrittenTransferIsCaughtFromEverySide(t *testing.T) {
	t.Parallel()
	b := newBook(t)
	ctx := t.Context()
	id := uuid.New()
	require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO transfers (id, idempotency_key, request_hash, from_account_id, to_account_id, amount, currency)
			VALUES ($1, 'by-hand', repeat('0', 64), $2, $3, 10, 'USD')`, id, b.alice.ID, b.bob.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO ledger_entries (id, transaction_id, account_id, amount, direction) VALUES
			(gen_random_uuid(), $1, $2, -10, 'debit'), (gen_random_uuid(), $1, $3, 4, 'credit'), (gen_random_uuid(), $1, $3, 6, 'credit')`,
			id, b.alice.ID, b.bob.ID)
		return err
	}))

	r, _ := run(t, b.pool)

	alice, bob := b.alice.ID.String(), b.bob.ID.String()
	require.Equal(t, 5, r.Transfers)
	require.ElementsMatch(t, []Mismatch{
		{Kind: KindBalanceProjection, AccountID: alice, Detail: "entries 60.0000, projection 70.0000, events 70.0000"},
		{Kind: KindEventFold, AccountID: alice, Detail: "entries 60.0000, projection 70.0000, events 70.0000"},
		{Kind: KindBalanceProjection, AccountID: bob, Detail: "entries 40.0000, projection 30.0000, events 30.0000"},
		{Kind: KindEventFold, AccountID: bob, Detail: "entries 40.0000, projection 30.0000, events 30.0000"},
		{Kind: KindTransaction, TransferID: id.String(), Detail: "3 entries summing to 0.0000 with 1 matching debits and 0 matching credits; " +
			"want 2 entries, -10.0000 on from and +10.0000 on to"},
		{Kind: KindTransferEvent, TransferID: id.String(), Detail: "0 ledger.transfer_completed events on transfer-" + id.String() +
			", 0 agreeing with the transfer (amount 10.0000); want exactly 1"},
	}, r.Mismatches)
}

// The database refuses an unbalanced transaction at commit, so that check
// cannot be planted legally: on good data its query must return nothing.
func TestUnbalancedTransactionsSQL_ReturnsNothingOnGoodData(t *testing.T) {
	t.Parallel()
	b := newBook(t)

	rows, err := b.pool.Query(t.Context(), unbalancedTransactionsSQL, mismatchesMax+1)
	require.NoError(t, err)
	n := 0
	for rows.Next() {
		n++
	}
	require.NoError(t, rows.Err())
	require.Zero(t, n)
}

func TestRun_InsideCallersTransactionSeesItsSnapshot(t *testing.T) {
	t.Parallel()
	b := newBook(t)
	ctx := t.Context()
	tx, err := b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	_, err = tx.Exec(ctx, `UPDATE account_balances SET balance = balance + 2 WHERE account_id = $1`, b.bob.ID)
	require.NoError(t, err)

	inTx, _ := run(t, tx)
	outside, _ := run(t, b.pool)

	require.Equal(t, []Mismatch{{Kind: KindBalanceProjection, AccountID: b.bob.ID.String(),
		Detail: "entries 30.0000, projection 32.0000, events 30.0000"}}, inTx.Mismatches)
	require.Empty(t, outside.Mismatches)
}

// More accounts than one page: the cursor must visit each exactly once.
func TestRun_PagesThroughManyAccounts(t *testing.T) {
	t.Parallel()
	b := newBook(t)
	var last ledger.Account
	for i := range accountsPageSize + 3 {
		last = b.open(t, fmt.Sprintf("a%d", i), false)
	}
	// One plant on the first page, one on the second (ids are UUIDv7, so
	// the last account opened sorts last).
	for _, id := range []uuid.UUID{b.alice.ID, last.ID} {
		b.exec(t, `UPDATE account_balances SET balance = balance + 1 WHERE account_id = $1`, id)
	}

	r, _ := run(t, b.pool)

	require.Equal(t, accountsPageSize+6, r.Accounts)
	require.Equal(t, []Mismatch{
		{Kind: KindBalanceProjection, AccountID: b.alice.ID.String(), Detail: "entries 70.0000, projection 71.0000, events 70.0000"},
		{Kind: KindBalanceProjection, AccountID: last.ID.String(), Detail: "entries 0.0000, projection 1.0000, events 0.0000"},
	}, r.Mismatches)
}

func TestReport_WriteListsEverySubject(t *testing.T) {
	t.Parallel()
	r := Report{Accounts: 2, Transfers: 1, Omitted: 3, Mismatches: []Mismatch{
		{Kind: KindLedgerTotal, Detail: "entries sum to 1.0000, want 0.0000"},
		{Kind: KindTransferEvent, TransferID: "t1", Detail: "d"},
	}}
	var out bytes.Buffer

	require.NoError(t, r.Write(&out))

	require.Equal(t, "MISMATCH: 2 accounts, 1 transfers, 5 mismatches\n"+
		"ledger_total  ledger  entries sum to 1.0000, want 0.0000\n"+
		"transfer_event  transfer t1  d\n"+
		"... and 3 more mismatches not listed\n", out.String())
}
