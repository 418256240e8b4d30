package redisstream

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/transport"
)

func TestReserveBatch_TakesKeysAndMarkersButEnqueuesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{RatePerSecond: rateNoRefill, Burst: 3})

	first, again := testAdmission("client-1", "key-1"), testAdmission("client-1", "key-1")
	other := testAdmission("client-1", "key-2")
	results, err := g.ReserveBatch(ctx, []transport.Admission{first, again, other})
	require.NoError(t, err)
	require.Equal(t, []transport.Result{
		{Outcome: transport.Accepted, EventID: first.EventID, MessageID: first.EventID},
		{Outcome: transport.Duplicate, EventID: first.EventID},
		{Outcome: transport.Accepted, EventID: other.EventID, MessageID: other.EventID},
	}, results)

	exists, err := client.Exists(ctx, cfg.Stream).Result()
	require.NoError(t, err)
	require.Zero(t, exists, "reserving never touches the work stream")
	for _, a := range []transport.Admission{first, other} {
		pending, ok, err := g.Pending(ctx, a.EventID)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, a.Pending, pending)
	}

	// The bucket is shared with Admit: three tokens are gone.
	results, err = g.ReserveBatch(ctx, []transport.Admission{testAdmission("client-1", "key-3")})
	require.NoError(t, err)
	require.Equal(t, transport.RateLimited, results[0].Outcome)
}

func TestRelease_FreesOnlyKeysStillMappedToTheEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{})

	lost := testAdmission("client-1", "key-1")
	kept := testAdmission("client-1", "key-2")
	_, err := g.ReserveBatch(ctx, []transport.Admission{lost, kept})
	require.NoError(t, err)

	// key-2 expired and was taken by another event meanwhile: releasing kept must not free it.
	require.NoError(t, client.Set(ctx, cfg.KeyPrefix+"idem:key-2", "someone-else", 0).Err())
	require.NoError(t, g.Release(ctx, []transport.Admission{lost, kept}))

	_, ok, err := g.Lookup(ctx, "key-1")
	require.NoError(t, err)
	require.False(t, ok, "the released key is free again")
	owner, ok, err := g.Lookup(ctx, "key-2")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "someone-else", owner)
	for _, a := range []transport.Admission{lost, kept} {
		_, ok, err := g.Pending(ctx, a.EventID)
		require.NoError(t, err)
		require.False(t, ok, "no pending marker for an event that was never queued")
	}

	// The freed key is accepted again.
	res, err := g.Admit(ctx, testAdmission("client-1", "key-1"))
	require.NoError(t, err)
	require.Equal(t, transport.Accepted, res.Outcome)
	require.NoError(t, g.Release(ctx, nil))
}
