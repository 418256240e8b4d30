package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func (g *gates) users(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gt, ok := g.byKey[key]; ok {
		return gt.users
	}
	return 0
}

func TestGates_AdmitOneAtATimeInArrivalOrderAndForgetIdleKeys(t *testing.T) {
	t.Parallel()
	g := &gates{byKey: map[string]*gate{}}
	ctx := t.Context()
	far := time.Now().Add(time.Minute)

	leaveFirst, err := g.enter(ctx, "k", far)
	require.NoError(t, err)

	const waiters = 3
	order := make(chan int, waiters)
	for i := range waiters {
		go func() {
			leave, err := g.enter(ctx, "k", far)
			if err != nil {
				order <- -1
				return
			}
			order <- i
			leave()
		}()
		// Each waiter is queued before the next one starts.
		require.Eventually(t, func() bool { return g.users("k") == i+2 }, 10*time.Second, time.Millisecond)
	}

	// A caller whose deadline passes while the gate is taken is turned away.
	_, err = g.enter(ctx, "k", time.Now().Add(10*time.Millisecond))
	require.ErrorIs(t, err, ErrLockBusy)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = g.enter(cancelled, "k", far)
	require.ErrorIs(t, err, context.Canceled)
	// Another key is not held up.
	leaveOther, err := g.enter(ctx, "other", far)
	require.NoError(t, err)
	leaveOther()

	leaveFirst()
	var got []int
	for range waiters {
		got = append(got, <-order)
	}
	require.Equal(t, []int{0, 1, 2}, got)
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.byKey) == 0
	}, 10*time.Second, time.Millisecond)
}
