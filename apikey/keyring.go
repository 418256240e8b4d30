package apikey

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

const (
	refreshDefault = 2 * time.Second
	// refreshMin keeps a misconfigured keyring from hammering Postgres.
	refreshMin = 10 * time.Millisecond
	// refreshTimeout bounds one load and flush, so a hung query delays the
	// next refresh rather than stopping them all.
	refreshTimeout = 10 * time.Second
	// finalFlushTimeout bounds the flush of the last uses when the keyring stops.
	finalFlushTimeout = 2 * time.Second
)

// KeyringConfig configures a Keyring. Zero values take the defaults.
type KeyringConfig struct {
	// Refresh is how often keys are reloaded and uses written (default 2s):
	// new and revoked keys are honoured within it.
	Refresh time.Duration
	// Logger receives refresh failures (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock for last_used_at (default time.Now).
	Now func() time.Time
}

func (c KeyringConfig) withDefaults() KeyringConfig {
	if c.Refresh == 0 {
		c.Refresh = refreshDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate checks the configuration as it will be used, defaults filled in.
func (c KeyringConfig) Validate() error {
	if c.Refresh < refreshMin {
		return fmt.Errorf("keyring: Refresh %s: want at least %s", c.Refresh, refreshMin)
	}
	if c.Logger == nil || c.Now == nil {
		return errors.New("keyring: Logger and Now are required")
	}
	return nil
}

// Keyring holds every key in memory, so authenticating a request costs a
// map lookup and a hash, never a query. A background loop reloads the keys
// and writes when each was last used, every Refresh.
type Keyring struct {
	store *Store
	cfg   KeyringConfig

	snap atomic.Pointer[snapshot]
	used sync.Map // id -> struct{}: used since the last flush

	refreshMu sync.Mutex // one reload at a time, so an older load never replaces a newer one

	mu     sync.Mutex // guards cancel and done
	cancel context.CancelFunc
	done   chan struct{}
}

// snapshot is one load of the table; it is never modified once published.
type snapshot struct {
	keys map[string]stored
	// open is true when the table held no key at all.
	open bool
}

// NewKeyring returns a keyring on store. It holds no key until Start.
func NewKeyring(store *Store, cfg KeyringConfig) (*Keyring, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	k := &Keyring{store: store, cfg: cfg}
	k.snap.Store(&snapshot{})
	return k, nil
}

// Start loads the keys, returning the error if that fails, then refreshes
// them every Refresh until Stop or until ctx ends.
func (k *Keyring) Start(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done != nil {
		return errors.New("keyring: already started")
	}
	if err := k.Refresh(ctx); err != nil {
		return err
	}
	loopCtx, cancel := context.WithCancel(ctx)
	k.cancel, k.done = cancel, make(chan struct{})
	go k.loop(loopCtx, k.done)
	return nil
}

// Stop ends the refresh loop, writes the last uses and waits for it. It is
// safe to call more than once, and before Start.
func (k *Keyring) Stop() {
	k.mu.Lock()
	cancel, done := k.cancel, k.done
	k.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (k *Keyring) loop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(k.cfg.Refresh)
	defer tick.Stop()
	failing := false // log a failure streak once, not every Refresh
	for {
		select {
		case <-ctx.Done():
			// Uses since the last refresh would be lost with the process.
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlushTimeout)
			err := k.flush(flushCtx)
			cancel()
			if err != nil {
				k.cfg.Logger.Warn("api keys: last uses not recorded", "error", err)
			}
			return
		case <-tick.C:
		}
		refreshCtx, cancel := context.WithTimeout(ctx, refreshTimeout)
		err := k.Refresh(refreshCtx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			// Stopping: the next turn flushes and returns.
		case err != nil && !failing:
			failing = true
			k.cfg.Logger.Error("api keys: refresh failed; authenticating with the keys last loaded", "error", err)
		case err == nil && failing:
			failing = false
			k.cfg.Logger.Info("api keys: refresh works again")
		}
	}
}

// Refresh writes the uses recorded since the last refresh, then reloads
// every key. A failed reload keeps the keys loaded before.
func (k *Keyring) Refresh(ctx context.Context) error {
	k.refreshMu.Lock()
	defer k.refreshMu.Unlock()
	flushErr := k.flush(ctx)
	all, err := k.store.all(ctx)
	if err != nil {
		return errors.Join(flushErr, err)
	}
	keys := make(map[string]stored, len(all))
	for _, s := range all {
		keys[s.key.ID] = s
	}
	k.snap.Store(&snapshot{keys: keys, open: len(all) == 0})
	return flushErr
}

// flush writes the recorded uses with one MarkUsed, at the time of the
// flush: last_used_at is accurate to within Refresh. On failure the ids
// are recorded again for the next flush.
func (k *Keyring) flush(ctx context.Context) error {
	var ids []string
	k.used.Range(func(id, _ any) bool {
		if _, ok := k.used.LoadAndDelete(id); ok {
			ids = append(ids, id.(string))
		}
		return true
	})
	if err := k.store.MarkUsed(ctx, ids, k.cfg.Now()); err != nil {
		for _, id := range ids {
			k.used.Store(id, struct{}{})
		}
		return err
	}
	return nil
}

// Open reports whether the table held no key at the last load: revoked keys
// count, so revoking every key never opens the API. It is false before Start.
func (k *Keyring) Open() bool { return k.snap.Load().open }

// Authenticate returns the key's record: ErrMissing for an empty key,
// ErrUnknown for a key not stored (unknown id or wrong secret alike),
// ErrRevoked for a revoked one. It is safe for concurrent use; the Key it
// returns is the caller's own copy.
func (k *Keyring) Authenticate(key string) (Key, error) {
	if key == "" {
		return Key{}, ErrMissing
	}
	id, hash := IDOf(key), Hash(key)
	s, found := k.snap.Load().keys[id]
	// Compare even when the id is unknown, so the time taken does not say
	// whether an id exists. s.hash is then all zeros.
	match := subtle.ConstantTimeCompare(hash[:], s.hash[:]) == 1
	if !found || !match {
		return Key{}, ErrUnknown
	}
	if s.key.RevokedAt != nil {
		return Key{}, ErrRevoked
	}
	if _, seen := k.used.Load(id); !seen { // a read on the hot path, a write once per refresh
		k.used.Store(id, struct{}{})
	}
	return s.key.clone(), nil
}
