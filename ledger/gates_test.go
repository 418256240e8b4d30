package ledger

import (
	"context"
	"runtime"
	"strings"
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

// waitingInEnter counts the goroutines blocked in gates.enter's select: a
// caller counted in users may not have reached its channel send yet, and
// only the order of the sends is the order of admission.
func waitingInEnter() int {
	buf := make([]byte, 1<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "[select") && strings.Contains(g, "ledger.(*gates).enter(") {
			n++
		}
	}
	return n
}

// Not parallel: waitingInEnter sees every goroutine of the package, and no
// parallel test runs beside a test that is not.
func TestGates_AdmitOneAtATimeInArrivalOrderAndForgetIdleKeys(t *testing.T) {
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
		// Each waiter is queued on the gate's channel before the next one starts.
		require.Eventually(t, func() bool { return g.users("k") == i+2 && waitingInEnter() == i+1 }, 10*time.Second, time.Millisecond)
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
