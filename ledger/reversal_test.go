package ledger_test

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/logevent"
)

func TestReverse_RestoresBothBalancesOnce(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	ctx := t.Context()
	_, alice := fundedAccount(t, svc, "100")
	bob := openAccount(t, svc, "bob", false)
	original := move(t, svc, alice.ID, bob.ID, "40.25")
	require.Equal(t, "59.7500", balanceOf(t, svc, alice.ID))

	reversal, created, err := svc.Reverse(ctx, ledger.ReverseParams{TransferID: original.ID, IdempotencyKey: "undo-1"})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, original.ID, reversal.ReversalOf)
	require.Equal(t, bob.ID, reversal.FromAccountID)
	require.Equal(t, alice.ID, reversal.ToAccountID)
	require.Equal(t, "40.2500", reversal.Amount.StringFixed(4))
	require.Equal(t, "100.0000", balanceOf(t, svc, alice.ID))
	require.Equal(t, "0.0000", balanceOf(t, svc, bob.ID))

	again, created, err := svc.Reverse(ctx, ledger.ReverseParams{TransferID: original.ID, IdempotencyKey: "undo-1"})
	require.NoError(t, err)
	require.False(t, created, "the same key returns the same reversal")
	require.Equal(t, reversal.ID, again.ID)

	_, _, err = svc.Reverse(ctx, ledger.ReverseParams{TransferID: original.ID, IdempotencyKey: "undo-2"})
	require.ErrorIs(t, err, ledger.ErrAlreadyReversed)
	require.Equal(t, "100.0000", balanceOf(t, svc, alice.ID))
	require.Equal(t, 3, countRows(t, pool, "transfers"))

	stored, err := svc.GetTransfer(ctx, reversal.ID)
	require.NoError(t, err)
	require.Equal(t, original.ID, stored.ReversalOf)

	events, err := eventstore.ReadStream(ctx, pool, logevent.TransferStream(reversal.ID))
	require.NoError(t, err)
	require.Len(t, events, 1)
	var data logevent.TransferCompleted
	require.NoError(t, json.Unmarshal(events[0].Data, &data))
	require.NotNil(t, data.ReversalOf)
	require.Equal(t, original.ID, *data.ReversalOf)
}

func TestReverse_IsRefusedWhenTheReceiverSpentTheMoney(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	world, alice := fundedAccount(t, svc, "100")
	bob := openAccount(t, svc, "bob", false)
	original := move(t, svc, alice.ID, bob.ID, "40")
	move(t, svc, bob.ID, world.ID, "30")
	before := rowCounts(t, pool)

	_, _, err := svc.Reverse(t.Context(), ledger.ReverseParams{TransferID: original.ID, IdempotencyKey: "undo"})
	require.ErrorIs(t, err, ledger.ErrInsufficientFunds)
	require.Equal(t, before, rowCounts(t, pool))
	require.Equal(t, "10.0000", balanceOf(t, svc, bob.ID))

	// The key was not consumed: once bob has the money again, it works.
	move(t, svc, world.ID, bob.ID, "30")
	_, created, err := svc.Reverse(t.Context(), ledger.ReverseParams{TransferID: original.ID, IdempotencyKey: "undo"})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "0.0000", balanceOf(t, svc, bob.ID))
	require.Equal(t, "100.0000", balanceOf(t, svc, alice.ID))
}

func TestReverse_UnknownTransferIsNotFound(t *testing.T) {
	t.Parallel()
	svc, _ := newLedger(t, ledger.LockPostgres)

	_, _, err := svc.Reverse(t.Context(), ledger.ReverseParams{TransferID: uuid.New(), IdempotencyKey: "undo"})
	require.ErrorIs(t, err, ledger.ErrTransferNotFound)
}

func TestReverse_KeyOfAnotherTransferIsConflict(t *testing.T) {
	t.Parallel()
	svc, _ := newLedger(t, ledger.LockPostgres)
	_, alice := fundedAccount(t, svc, "100")
	bob := openAccount(t, svc, "bob", false)
	original, _, err := svc.Transfer(t.Context(), ledger.TransferParams{From: alice.ID, To: bob.ID, Amount: mustAmount(t, "5"), IdempotencyKey: "pay"})
	require.NoError(t, err)

	_, _, err = svc.Reverse(t.Context(), ledger.ReverseParams{TransferID: original.ID, IdempotencyKey: "pay"})
	require.ErrorIs(t, err, ledger.ErrIdempotencyConflict)
	require.Equal(t, "5.0000", balanceOf(t, svc, bob.ID))
}
