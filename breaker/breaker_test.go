package breaker

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// service is a switchable dependency: the breaker's own logic is what is
// under test here; the worker tests stop a real Postgres.
type service struct{ down atomic.Bool }

func (s *service) probe(context.Context) error {
	if s.down.Load() {
		return errors.New("down")
	}
	return nil
}

func TestBreaker_OutageDoesNotCountAsAttemptAndResumes(t *testing.T) {
	t.Parallel()
	svc := &service{}
	var changes []State
	b, err := New(Config{Probe: svc.probe, ProbeInterval: 20 * time.Millisecond, OnChange: func(s State, _ error) { changes = append(changes, s) }})
	require.NoError(t, err)
	defer b.Close()

	var calls atomic.Int32
	h := b.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		calls.Add(1)
		if svc.down.Load() {
			return nil, errors.New("connection refused")
		}
		return nil, nil
	})

	svc.down.Store(true)
	done := make(chan error, 1)
	go func() { _, err := h(message.NewMessage("1", nil)); done <- err }()

	require.Eventually(t, func() bool { return b.State() == Open }, time.Second, 5*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // several probe intervals pass while open
	require.Equal(t, int32(1), calls.Load(), "the handler is not re-run while the service is down")

	svc.down.Store(false)
	require.NoError(t, <-done)
	require.Equal(t, int32(2), calls.Load())
	require.Equal(t, Closed, b.State())
	require.Equal(t, []State{Open, Closed}, changes)
}

func TestBreaker_OrdinaryErrorPassesThrough(t *testing.T) {
	t.Parallel()
	b, err := New(Config{Probe: func(context.Context) error { return nil }})
	require.NoError(t, err)
	defer b.Close()
	boom := errors.New("bad message")
	_, err = b.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, boom })(message.NewMessage("1", nil))
	require.ErrorIs(t, err, boom)
	require.Equal(t, Closed, b.State())
}

func TestBreaker_WaitEndsWithContext(t *testing.T) {
	t.Parallel()
	b, err := New(Config{Probe: func(context.Context) error { return errors.New("down") }, ProbeInterval: time.Hour})
	require.NoError(t, err)
	defer b.Close()
	require.True(t, b.Check(context.Background(), errors.New("x")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, b.Wait(ctx), context.DeadlineExceeded)
}
