package ledger_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/ledger"
)

func TestEntries_RunningBalanceIsRightOnEveryPage(t *testing.T) {
	t.Parallel()
	svc, _ := newLedger(t, ledger.LockPostgres)
	world := openAccount(t, svc, "world", true)
	alice := openAccount(t, svc, "alice", false)
	bob := openAccount(t, svc, "bob", false)
	var transfers []ledger.Transfer
	for _, step := range []struct {
		from, to uuid.UUID
		amount   string
	}{
		{world.ID, alice.ID, "100"},
		{alice.ID, bob.ID, "30.5"},
		{world.ID, alice.ID, "0.0001"},
		{bob.ID, alice.ID, "10"},
		{alice.ID, world.ID, "79.5001"},
	} {
		transfers = append(transfers, move(t, svc, step.from, step.to, step.amount))
	}

	type line struct {
		Transfer  uuid.UUID
		Amount    string
		Direction ledger.Direction
		Running   string
	}
	var lines []line
	var pages []int
	after := uuid.Nil
	for range 10 {
		page, more, err := svc.Entries(t.Context(), alice.ID, ledger.EntriesParams{After: after, Limit: 2})
		require.NoError(t, err)
		pages = append(pages, len(page))
		for _, e := range page {
			require.Equal(t, alice.ID, e.AccountID)
			require.False(t, e.CreatedAt.IsZero())
			lines = append(lines, line{e.TransactionID, e.Amount.StringFixed(4), e.Direction, e.RunningBalance.StringFixed(4)})
			after = e.ID
		}
		if !more {
			break
		}
	}
	require.Equal(t, []int{2, 2, 1}, pages)
	require.Equal(t, []line{
		{transfers[0].ID, "100.0000", ledger.Credit, "100.0000"},
		{transfers[1].ID, "-30.5000", ledger.Debit, "69.5000"},
		{transfers[2].ID, "0.0001", ledger.Credit, "69.5001"},
		{transfers[3].ID, "10.0000", ledger.Credit, "79.5001"},
		{transfers[4].ID, "-79.5001", ledger.Debit, "0.0000"},
	}, lines)
	require.Equal(t, "0.0000", balanceOf(t, svc, alice.ID))
}

func TestEntries_LimitIsCappedAt500(t *testing.T) {
	t.Parallel()
	svc, _ := newLedger(t, ledger.LockPostgres)
	world := openAccount(t, svc, "world", true)
	alice := openAccount(t, svc, "alice", false)
	for range 501 {
		move(t, svc, world.ID, alice.ID, "1")
	}

	page, more, err := svc.Entries(t.Context(), alice.ID, ledger.EntriesParams{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, page, 500)
	require.True(t, more)
	require.Equal(t, "500.0000", page[499].RunningBalance.StringFixed(4))

	rest, more, err := svc.Entries(t.Context(), alice.ID, ledger.EntriesParams{After: page[499].ID})
	require.NoError(t, err)
	require.Len(t, rest, 1)
	require.False(t, more)
	require.Equal(t, "501.0000", rest[0].RunningBalance.StringFixed(4))
}

func TestEntries_EmptyAccountHasNoEntriesAndUnknownIsNotFound(t *testing.T) {
	t.Parallel()
	svc, _ := newLedger(t, ledger.LockPostgres)
	alice := openAccount(t, svc, "alice", false)

	page, more, err := svc.Entries(t.Context(), alice.ID, ledger.EntriesParams{})
	require.NoError(t, err)
	require.Empty(t, page)
	require.False(t, more)

	_, _, err = svc.Entries(t.Context(), uuid.New(), ledger.EntriesParams{})
	require.ErrorIs(t, err, ledger.ErrAccountNotFound)
}
