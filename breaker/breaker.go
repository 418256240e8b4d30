// Package breaker is a circuit breaker for message handlers that depend on
// one service (Postgres). While the service is down the breaker is open and
// every handler waits, so the consumers stop pulling messages instead of
// burning their attempts; a probe checks the service every ProbeInterval and
// closes the breaker when it answers.
//
// Unlike watermill's CircuitBreaker middleware, an open breaker here blocks
// rather than failing fast: with Redis Streams a failed message is re-sent at
// once, so failing fast would spin through attempts during an outage.
package breaker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// State of a breaker.
type State int

const (
	Closed State = 0
	Open   State = 1
)

// Config configures a Breaker.
type Config struct {
	// Probe checks the service; nil error means healthy. It must honour ctx.
	Probe func(ctx context.Context) error
	// ProbeInterval is how often an open breaker probes (default 30s).
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe (default 2s).
	ProbeTimeout time.Duration
	// OnChange is told every state change (metrics, logs). Optional.
	OnChange func(State, error)
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Probe == nil {
		return errors.New("breaker: Probe is required")
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 30 * time.Second
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = 2 * time.Second
	}
	return nil
}

// Breaker is shared by every consumer that depends on the same service.
type Breaker struct {
	cfg Config

	mu     sync.Mutex
	closed chan struct{} // closed while the breaker is closed
	stop   chan struct{}
	wg     sync.WaitGroup
}

// New returns a closed breaker.
func New(cfg Config) (*Breaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Breaker{cfg: cfg, closed: make(chan struct{}), stop: make(chan struct{})}
	close(b.closed)
	return b, nil
}

// State reports the current state.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.closed:
		return Closed
	default:
		return Open
	}
}

// Wait blocks while the breaker is open. It returns ctx's error if ctx ends first.
func (b *Breaker) Wait(ctx context.Context) error {
	b.mu.Lock()
	ch := b.closed
	b.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.stop:
		return errors.New("breaker stopped")
	}
}

// Check runs the probe after a failure: if the service is down the breaker
// opens and Check returns true, meaning the failure was the outage's and not
// the message's.
func (b *Breaker) Check(ctx context.Context, cause error) (outage bool) {
	probeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.ProbeTimeout)
	defer cancel()
	if err := b.cfg.Probe(probeCtx); err == nil {
		return false
	}
	b.open(cause)
	return true
}

func (b *Breaker) open(cause error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.closed:
	default:
		return // already open: one prober is enough
	}
	select {
	case <-b.stop:
		return
	default:
	}
	b.closed = make(chan struct{})
	if b.cfg.OnChange != nil {
		b.cfg.OnChange(Open, cause)
	}
	b.wg.Add(1)
	go b.probeUntilHealthy(b.closed)
}

func (b *Breaker) probeUntilHealthy(closed chan struct{}) {
	defer b.wg.Done()
	tick := time.NewTicker(b.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ProbeTimeout)
		err := b.cfg.Probe(ctx)
		cancel()
		if err == nil {
			if b.cfg.OnChange != nil {
				b.cfg.OnChange(Closed, nil) // before handlers resume, so metrics never lag them
			}
			b.mu.Lock()
			close(closed)
			b.mu.Unlock()
			return
		}
	}
}

// Middleware waits while the breaker is open, runs the handler, and when the
// handler fails because the service is down, opens the breaker, waits for the
// service and runs the handler again: an outage never counts as an attempt.
func (b *Breaker) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		for {
			if err := b.Wait(msg.Context()); err != nil {
				return nil, err
			}
			out, err := h(msg)
			if err == nil || !b.Check(msg.Context(), err) {
				return out, err
			}
		}
	}
}

// Close stops the prober; waiting handlers return an error.
func (b *Breaker) Close() {
	b.mu.Lock()
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	b.mu.Unlock()
	b.wg.Wait()
}
