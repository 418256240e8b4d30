package ledger_test

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/logevent"
)

func TestTransfer_MovesMoneyAndWritesBalancedEntries(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	ctx := t.Context()
	world := openAccount(t, svc, "world", true)
	alice := openAccount(t, svc, "alice", false)

	tr, created, err := svc.Transfer(ctx, ledger.TransferParams{
		From: world.ID, To: alice.ID, Amount: mustAmount(t, "100.50"), Currency: "USD",
		IdempotencyKey: "fund-alice", Metadata: map[string]any{"note": "salary", "n": 1},
	})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, world.ID, tr.FromAccountID)
	require.Equal(t, alice.ID, tr.ToAccountID)
	require.Equal(t, "100.5000", tr.Amount.StringFixed(4))
	require.Equal(t, "USD", tr.Currency)
	require.Equal(t, ledger.StatusCompleted, tr.Status)
	require.Equal(t, "fund-alice", tr.IdempotencyKey)
	require.Equal(t, uuid.Nil, tr.ReversalOf)
	require.Equal(t, map[string]any{"note": "salary", "n": float64(1)}, tr.Metadata)
	require.False(t, tr.CreatedAt.IsZero())

	require.Equal(t, "-100.5000", balanceOf(t, svc, world.ID))
	require.Equal(t, "100.5000", balanceOf(t, svc, alice.ID))

	stored, err := svc.GetTransfer(ctx, tr.ID)
	require.NoError(t, err)
	require.Equal(t, tr.ID, stored.ID)
	require.Equal(t, "100.5000", stored.Amount.StringFixed(4))
	require.Equal(t, tr.Metadata, stored.Metadata)
	require.True(t, tr.CreatedAt.Equal(stored.CreatedAt))

	rows, err := pool.Query(ctx, `SELECT account_id, amount::text, direction FROM ledger_entries WHERE transaction_id = $1 ORDER BY id`, tr.ID)
	require.NoError(t, err)
	type entry struct {
		Account   uuid.UUID
		Amount    string
		Direction string
	}
	var entries []entry
	for rows.Next() {
		var e entry
		require.NoError(t, rows.Scan(&e.Account, &e.Amount, &e.Direction))
		entries = append(entries, e)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []entry{{world.ID, "-100.5000", "debit"}, {alice.ID, "100.5000", "credit"}}, entries)
}

func TestGetTransfer_UnknownIsNotFound(t *testing.T) {
	t.Parallel()
	svc, _ := newLedger(t, ledger.LockPostgres)

	_, err := svc.GetTransfer(t.Context(), uuid.New())
	require.ErrorIs(t, err, ledger.ErrTransferNotFound)
}

func TestTransfer_SameKeySameBodyReturnsTheOriginalOnce(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world, alice := fundedAccount(t, svc, "50")
	params := ledger.TransferParams{From: alice.ID, To: world.ID, Amount: mustAmount(t, "20"), IdempotencyKey: "k-1"}

	first, created, err := svc.Transfer(t.Context(), params)
	require.NoError(t, err)
	require.True(t, created)

	// "20.0000" is the same amount as "20": the same request.
	params.Amount = mustAmount(t, "20.0000")
	again, created, err := svc.Transfer(t.Context(), params)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first.ID, again.ID)
	require.Equal(t, "20.0000", again.Amount.StringFixed(4))
	require.True(t, first.CreatedAt.Equal(again.CreatedAt))

	require.Equal(t, "30.0000", balanceOf(t, svc, alice.ID))
	require.Equal(t, 2, countRows(t, pool, "transfers"))
}

func TestTransfer_SameKeyDifferentBodyIsConflict(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world, alice := fundedAccount(t, svc, "50")
	bob := openAccount(t, svc, "bob", false)
	base := ledger.TransferParams{From: alice.ID, To: bob.ID, Amount: mustAmount(t, "10"), IdempotencyKey: "k-1"}
	_, _, err := svc.Transfer(t.Context(), base)
	require.NoError(t, err)

	tests := []struct {
		name   string
		change func(p *ledger.TransferParams)
	}{
		{name: "amount", change: func(p *ledger.TransferParams) { p.Amount = mustAmount(t, "10.0001") }},
		{name: "receiver", change: func(p *ledger.TransferParams) { p.To = world.ID }},
		{name: "currency named", change: func(p *ledger.TransferParams) { p.Currency = "USD" }},
		{name: "metadata", change: func(p *ledger.TransferParams) { p.Metadata = map[string]any{"a": 1} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base
			tt.change(&p)
			_, _, err := svc.Transfer(t.Context(), p)
			require.ErrorIs(t, err, ledger.ErrIdempotencyConflict)
		})
	}
	require.Equal(t, "40.0000", balanceOf(t, svc, alice.ID))
	require.Equal(t, "10.0000", balanceOf(t, svc, bob.ID))
	require.Equal(t, 2, countRows(t, pool, "transfers"))
}

func TestTransfer_UnknownAccountIsNotFoundAndWritesNothing(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world, alice := fundedAccount(t, svc, "50")
	before := rowCounts(t, pool)

	for _, p := range []ledger.TransferParams{
		{From: alice.ID, To: uuid.New(), Amount: mustAmount(t, "1"), IdempotencyKey: newKey()},
		{From: uuid.New(), To: alice.ID, Amount: mustAmount(t, "1"), IdempotencyKey: newKey()},
	} {
		_, _, err := svc.Transfer(t.Context(), p)
		require.ErrorIs(t, err, ledger.ErrAccountNotFound)
	}
	require.Equal(t, before, rowCounts(t, pool))
	require.Equal(t, "50.0000", balanceOf(t, svc, alice.ID))
	require.Equal(t, "-50.0000", balanceOf(t, svc, world.ID))
}

func TestTransfer_ToItselfIsRefused(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	_, alice := fundedAccount(t, svc, "50")
	before := rowCounts(t, pool)

	_, _, err := svc.Transfer(t.Context(), ledger.TransferParams{From: alice.ID, To: alice.ID, Amount: mustAmount(t, "1"), IdempotencyKey: newKey()})
	require.ErrorIs(t, err, ledger.ErrSameAccount)
	require.Equal(t, before, rowCounts(t, pool))
}

func TestTransfer_CurrencyMismatchIsRefused(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world, alice := fundedAccount(t, svc, "50")
	euros, err := svc.CreateAccount(t.Context(), ledger.CreateAccountParams{Name: "euros", Currency: "EUR"})
	require.NoError(t, err)
	before := rowCounts(t, pool)

	tests := []struct {
		name   string
		params ledger.TransferParams
	}{
		{name: "accounts differ", params: ledger.TransferParams{From: alice.ID, To: euros.ID}},
		{name: "named currency differs from both", params: ledger.TransferParams{From: alice.ID, To: world.ID, Currency: "EUR"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.params
			p.Amount, p.IdempotencyKey = mustAmount(t, "1"), newKey()
			_, _, err := svc.Transfer(t.Context(), p)
			require.ErrorIs(t, err, ledger.ErrCurrencyMismatch)
		})
	}
	require.Equal(t, before, rowCounts(t, pool))
}

func TestTransfer_InsufficientFundsWritesNothingAndLeavesTheKeyFree(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world, alice := fundedAccount(t, svc, "10")
	bob := openAccount(t, svc, "bob", false)
	before := rowCounts(t, pool)
	params := ledger.TransferParams{From: alice.ID, To: bob.ID, Amount: mustAmount(t, "10.0001"), IdempotencyKey: "pay-bob"}

	_, _, err := svc.Transfer(t.Context(), params)
	require.ErrorIs(t, err, ledger.ErrInsufficientFunds)
	require.Equal(t, before, rowCounts(t, pool))
	require.Equal(t, "10.0000", balanceOf(t, svc, alice.ID))

	// A refused transfer did not consume its key: once funded, the same
	// request under the same key goes through.
	move(t, svc, world.ID, alice.ID, "0.0001")
	tr, created, err := svc.Transfer(t.Context(), params)
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "pay-bob", tr.IdempotencyKey)
	require.Equal(t, "0.0000", balanceOf(t, svc, alice.ID))
	require.Equal(t, "10.0001", balanceOf(t, svc, bob.ID))
}

func TestTransfer_AllowNegativeAccountMayGoBelowZero(t *testing.T) {
	t.Parallel()
	svc, _ := newLedger(t, ledger.LockPostgres)
	world := openAccount(t, svc, "world", true)
	alice := openAccount(t, svc, "alice", false)

	move(t, svc, world.ID, alice.ID, "9999999999999999.9999")
	require.Equal(t, "-9999999999999999.9999", balanceOf(t, svc, world.ID))

	// Beyond numeric(20,4) in either direction is an invalid amount, not an overflow error.
	_, _, err := svc.Transfer(t.Context(), ledger.TransferParams{From: world.ID, To: alice.ID, Amount: mustAmount(t, "0.0001"), IdempotencyKey: newKey()})
	require.ErrorIs(t, err, ledger.ErrInvalidAmount)
}

func TestTransfer_RefusesInvalidParams(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world, alice := fundedAccount(t, svc, "10")
	before := rowCounts(t, pool)
	long := make([]byte, 256)
	for i := range long {
		long[i] = 'k'
	}
	tests := []struct {
		name   string
		change func(p *ledger.TransferParams)
		want   error
	}{
		{name: "zero amount", change: func(p *ledger.TransferParams) { p.Amount = decimal.Zero }, want: ledger.ErrInvalidAmount},
		{name: "negative amount", change: func(p *ledger.TransferParams) { p.Amount = decimal.RequireFromString("-1") }, want: ledger.ErrInvalidAmount},
		{name: "five places", change: func(p *ledger.TransferParams) { p.Amount = decimal.RequireFromString("1.00001") }, want: ledger.ErrInvalidAmount},
		{name: "too large", change: func(p *ledger.TransferParams) { p.Amount = decimal.RequireFromString("10000000000000000") }, want: ledger.ErrInvalidAmount},
		{name: "empty key", change: func(p *ledger.TransferParams) { p.IdempotencyKey = "" }, want: ledger.ErrInvalidInput},
		{name: "256-character key", change: func(p *ledger.TransferParams) { p.IdempotencyKey = string(long) }, want: ledger.ErrInvalidInput},
		{name: "malformed currency", change: func(p *ledger.TransferParams) { p.Currency = "us" }, want: ledger.ErrInvalidInput},
		{name: "metadata not JSON", change: func(p *ledger.TransferParams) { p.Metadata = map[string]any{"c": make(chan int)} }, want: ledger.ErrInvalidInput},
		{name: "metadata over 16 KiB", change: func(p *ledger.TransferParams) { p.Metadata = map[string]any{"x": string(make([]byte, 16<<10))} }, want: ledger.ErrInvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ledger.TransferParams{From: alice.ID, To: world.ID, Amount: mustAmount(t, "1"), IdempotencyKey: newKey()}
			tt.change(&p)
			_, _, err := svc.Transfer(t.Context(), p)
			require.ErrorIs(t, err, tt.want)
		})
	}
	require.Equal(t, before, rowCounts(t, pool))

	_, _, err := svc.Transfer(t.Context(), ledger.TransferParams{From: alice.ID, To: world.ID, Amount: mustAmount(t, "1"), IdempotencyKey: string(long[:255])})
	require.NoError(t, err, "255 characters is the longest key")
}

func TestTransfer_AppendsEventsAndPublishesEachOnce(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	ctx := t.Context()
	world := openAccount(t, svc, "world", true)
	alice := openAccount(t, svc, "alice", false)

	var transfers []ledger.Transfer
	for _, amount := range []string{"10", "0.5", "2.25"} {
		transfers = append(transfers, move(t, svc, world.ID, alice.ID, amount))
	}

	for i, tr := range transfers {
		events, err := eventstore.ReadStream(ctx, pool, logevent.TransferStream(tr.ID))
		require.NoError(t, err)
		require.Len(t, events, 1)
		require.Equal(t, logevent.TypeTransferCompleted, events[0].Type)
		var data logevent.TransferCompleted
		require.NoError(t, json.Unmarshal(events[0].Data, &data))
		require.Equal(t, logevent.TransferCompleted{
			TransferID: tr.ID, FromAccountID: world.ID, ToAccountID: alice.ID,
			Amount: []string{"10.0000", "0.5000", "2.2500"}[i], Currency: "USD",
		}, data)
	}

	credits, err := eventstore.ReadStream(ctx, pool, logevent.AccountStream(alice.ID))
	require.NoError(t, err)
	require.Len(t, credits, 4)
	require.Equal(t, logevent.TypeAccountOpened, credits[0].Type)
	var balances []string
	for _, e := range credits[1:] {
		require.Equal(t, logevent.TypeAccountCredited, e.Type)
		var p logevent.AccountPosting
		require.NoError(t, json.Unmarshal(e.Data, &p))
		balances = append(balances, p.Amount+" -> "+p.Balance)
	}
	require.Equal(t, []string{"10.0000 -> 10.0000", "0.5000 -> 10.5000", "2.2500 -> 12.7500"}, balances)

	debits, err := eventstore.ReadStream(ctx, pool, logevent.AccountStream(world.ID))
	require.NoError(t, err)
	require.Len(t, debits, 4)
	var p logevent.AccountPosting
	require.NoError(t, json.Unmarshal(debits[3].Data, &p))
	require.Equal(t, logevent.TypeAccountDebited, debits[3].Type)
	require.Equal(t, "-2.2500", p.Amount)
	require.Equal(t, "-12.7500", p.Balance)

	// 2 account_opened + 3 transfers × 3 events, and every one is in the outbox,
	// one message per append: the outbox row is watermill's forwarder envelope,
	// its base64 payload the events.
	require.Equal(t, 11, countRows(t, pool, "event_log"))
	var unpublished int
	require.NoError(t, pool.QueryRow(ctx, `WITH published AS (
			SELECT ev->>'event_id' AS id FROM outbox o,
				jsonb_array_elements(convert_from(decode(o.payload->>'payload', 'base64'), 'UTF8')::jsonb -> 'events') ev)
		SELECT count(*) FROM event_log e WHERE (SELECT count(*) FROM published p WHERE p.id = e.event_id::text) <> 1`).Scan(&unpublished))
	require.Zero(t, unpublished)
	require.Equal(t, 5, countRows(t, pool, "outbox"))
}

func TestTransfer_AccountStreamVersionEqualsBalanceVersion(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	ctx := t.Context()
	world := openAccount(t, svc, "world", true)
	alice := openAccount(t, svc, "alice", false)
	bob := openAccount(t, svc, "bob", false)

	move(t, svc, world.ID, alice.ID, "100")
	move(t, svc, alice.ID, bob.ID, "30")
	move(t, svc, bob.ID, alice.ID, "5")
	move(t, svc, alice.ID, world.ID, "1")

	for _, want := range []struct {
		id      uuid.UUID
		version int64
		balance string
	}{{world.ID, 3, "-99.0000"}, {alice.ID, 5, "74.0000"}, {bob.ID, 3, "25.0000"}} {
		a, err := svc.GetAccount(ctx, want.id)
		require.NoError(t, err)
		streamVersion, err := eventstore.StreamVersion(ctx, pool, logevent.AccountStream(want.id))
		require.NoError(t, err)
		require.Equal(t, want.version, a.Version)
		require.Equal(t, want.version, streamVersion)
		require.Equal(t, want.balance, a.Balance.StringFixed(4))
	}
}

func TestTransfer_RecordsTheAPIKeyAndRefusesUnstorableTextAsInvalidInput(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world, alice := fundedAccount(t, svc, "10")
	ctx := t.Context()

	tr, created, err := svc.Transfer(ctx, ledger.TransferParams{
		From: alice.ID, To: world.ID, Amount: mustAmount(t, "1"), IdempotencyKey: "by-key", APIKeyID: "k1",
	})
	require.NoError(t, err)
	require.True(t, created)
	got, err := svc.GetTransfer(ctx, tr.ID)
	require.NoError(t, err)
	require.Equal(t, "k1", got.APIKeyID)

	// The same request under another key is a replay, not a conflict: who asked
	// is recorded, not part of what was asked.
	again, created, err := svc.Transfer(ctx, ledger.TransferParams{
		From: alice.ID, To: world.ID, Amount: mustAmount(t, "1"), IdempotencyKey: "by-key", APIKeyID: "k2",
	})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, tr.ID, again.ID)
	require.Equal(t, "k1", again.APIKeyID)

	reversal, created, err := svc.Reverse(ctx, ledger.ReverseParams{TransferID: tr.ID, IdempotencyKey: "undo", APIKeyID: "k2"})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "k2", reversal.APIKeyID)

	// Postgres refuses a NUL in jsonb (SQLSTATE 22P05): that is the request's
	// fault, never a transient error a client would retry for ever.
	before := countRows(t, pool, "transfers")
	_, _, err = svc.Transfer(ctx, ledger.TransferParams{
		From: alice.ID, To: world.ID, Amount: mustAmount(t, "1"), IdempotencyKey: "nul", Metadata: map[string]any{"note": "a\x00b"},
	})
	require.ErrorIs(t, err, ledger.ErrInvalidInput)
	_, _, err = svc.Transfer(ctx, ledger.TransferParams{
		From: alice.ID, To: world.ID, Amount: mustAmount(t, "1"), IdempotencyKey: "nul\x00key",
	})
	require.ErrorIs(t, err, ledger.ErrInvalidInput)
	require.Equal(t, before, countRows(t, pool, "transfers"))
}
