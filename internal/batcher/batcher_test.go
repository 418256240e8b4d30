package batcher

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Concurrent callers share calls of run, at most max requests each and at
// most concurrency calls at once, and each gets the result of its own request.
func TestBatcher_CallersShareCallsAndGetTheirOwnResults(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	var running, most atomic.Int32
	b := New(2, 50, func(reqs []int) []int {
		now := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		mu.Lock()
		sizes = append(sizes, len(reqs))
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // a round trip: callers pile up meanwhile
		out := make([]int, len(reqs))
		for i, r := range reqs {
			out[i] = r * 2
		}
		return out
	})

	const callers = 500
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { require.Equal(t, 2*i, b.Do(i)) })
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, n := range sizes {
		require.LessOrEqual(t, n, 50)
		total += n
	}
	require.Equal(t, callers, total)
	require.Less(t, len(sizes), callers/5, "requests waiting together go in one call: %v", sizes)
	require.LessOrEqual(t, most.Load(), int32(2), "at most concurrency calls at once")
}

// A lone caller makes its own call at once: nobody waits for a batch to fill.
func TestBatcher_ALoneCallerIsServedAtOnce(t *testing.T) {
	calls := 0
	b := New(1, 100, func(reqs []string) []string { calls++; return reqs })
	for _, s := range []string{"a", "b", "c"} {
		require.Equal(t, s, b.Do(s))
	}
	require.Equal(t, 3, calls)
}

// Requests queued behind a caller whose own result came in are still
// served: the call goes on without it.
func TestBatcher_NoRequestIsLeftBehind(t *testing.T) {
	release := make(chan struct{})
	first := true
	b := New(1, 1, func(reqs []int) []int {
		if first {
			first = false
			<-release
		}
		return reqs
	})
	done := make(chan int, 10)
	go func() { done <- b.Do(0) }()
	time.Sleep(20 * time.Millisecond) // 0 is being served, alone
	for i := 1; i < 10; i++ {
		go func() { done <- b.Do(i) }()
	}
	time.Sleep(20 * time.Millisecond) // 1..9 wait behind it
	close(release)
	got := map[int]bool{}
	for range 10 {
		select {
		case v := <-done:
			got[v] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("left behind: got %v", got)
		}
	}
	require.Len(t, got, 10)
}
