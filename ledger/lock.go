package ledger

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

const (
	// lockPollMin and lockPollMax bound the pause between two tries of a
	// lock that another process holds (within one process, waiters queue on
	// a gate instead): short at first, for a lock about to be released, then
	// longer, so that a long wait costs Redis few calls.
	lockPollMin = time.Millisecond
	lockPollMax = 50 * time.Millisecond
	// lockTriesMax bounds the tries of one lock, whatever LockWait says.
	lockTriesMax = 10_000
	// lockReleaseTimeout bounds releasing after the caller's context is done.
	lockReleaseTimeout = 5 * time.Second
)

// releaseScript deletes a lock only while it still holds our token: a lock
// that expired and was taken by someone else is theirs.
const releaseScript = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`

// accountLocks are the Redis account locks of LockRedis.
//
// Redis has no blocking SET NX, so a waiter polls. Within one process the
// waiters for one lock first queue on a local gate, in arrival order, and
// only the head of the queue polls Redis: a thousand callers on one hot
// account cost Redis one poller per process, not a thousand.
type accountLocks struct {
	client  redis.UniversalClient
	prefix  string
	wait    time.Duration
	ttl     time.Duration
	release *redis.Script
	gates   gates
}

func newAccountLocks(client redis.UniversalClient, prefix string, wait, ttl time.Duration) *accountLocks {
	return &accountLocks{
		client: client, prefix: prefix, wait: wait, ttl: ttl,
		release: redis.NewScript(releaseScript),
		gates:   gates{byKey: map[string]*gate{}},
	}
}

// key is the lock of one account.
func (l *accountLocks) key(id uuid.UUID) string {
	return l.prefix + "lock:account:" + id.String()
}

// lock takes the locks of ids in ascending id order (the order of the row
// locks, so that two lockers never wait for each other in a circle), trying
// for l.wait in all. It returns ErrLockBusy when a lock stays taken, and on
// success a function that releases them all; call it once the transaction
// has ended.
func (l *accountLocks) lock(ctx context.Context, ids ...uuid.UUID) (unlock func(), err error) {
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	ids = slices.Compact(ids)

	token := newLockToken()
	var tried []string
	var leaves []func()
	unlock = func() {
		releaseCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockReleaseTimeout)
		defer cancel()
		for _, key := range tried {
			// A lock left behind expires after l.ttl; nobody waits on this error.
			_ = l.release.Run(releaseCtx, l.client, []string{key}, token).Err()
		}
		// After Redis, so that the next local waiter finds the lock free.
		for _, leave := range leaves {
			leave()
		}
	}
	deadline := time.Now().Add(l.wait)
	for _, id := range ids {
		key := l.key(id)
		leave, err := l.gates.enter(ctx, key, deadline)
		if err != nil {
			unlock()
			return nil, fmt.Errorf("lock account %s: %w", id, err)
		}
		leaves = append(leaves, leave)
		// Recorded before the SET: a SET whose reply was lost may still have
		// taken the lock, and compare-and-delete is harmless if it did not.
		tried = append(tried, key)
		if err := l.acquire(ctx, key, token, deadline); err != nil {
			unlock()
			return nil, fmt.Errorf("lock account %s: %w", id, err)
		}
	}
	return unlock, nil
}

// acquire tries SET key token NX PX ttl until it succeeds or deadline passes.
func (l *accountLocks) acquire(ctx context.Context, key, token string, deadline time.Time) error {
	pause := lockPollMin
	for range lockTriesMax {
		ok, err := l.client.SetNX(ctx, key, token, l.ttl).Result()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return ErrLockBusy
		}
		jittered := pause/2 + rand.N(pause/2+1) //nolint:gosec // G404: jitter needs no secrecy
		if err := sleep(ctx, min(jittered, remaining)); err != nil {
			return err
		}
		pause = min(pause*2, lockPollMax)
	}
	return ErrLockBusy
}

// gates are the local queues in front of the Redis locks, one per key that
// someone in this process holds or waits for.
type gates struct {
	mu    sync.Mutex
	byKey map[string]*gate
}

type gate struct {
	turn  chan struct{} // holds a value while someone is through the gate
	users int           // holders and waiters; the gate is dropped at 0
}

// enter waits, in arrival order, until no other caller of this process is
// through the gate of key, or until deadline (ErrLockBusy). leave lets the
// next one through.
func (g *gates) enter(ctx context.Context, key string, deadline time.Time) (leave func(), err error) {
	g.mu.Lock()
	gt, ok := g.byKey[key]
	if !ok {
		gt = &gate{turn: make(chan struct{}, 1)}
		g.byKey[key] = gt
	}
	gt.users++
	g.mu.Unlock()

	leave = func() {
		<-gt.turn
		g.drop(key, gt)
	}
	// A free gate is entered even when the deadline has passed: the select
	// below would pick between the two at random.
	select {
	case gt.turn <- struct{}{}:
		return leave, nil
	default:
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	// Blocked senders on a channel are served first come, first served.
	select {
	case gt.turn <- struct{}{}:
		return leave, nil
	case <-timer.C:
		g.drop(key, gt)
		return nil, ErrLockBusy
	case <-ctx.Done():
		g.drop(key, gt)
		return nil, ctx.Err()
	}
}

func (g *gates) drop(key string, gt *gate) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gt.users--
	if gt.users == 0 {
		delete(g.byKey, key)
	}
}

// newLockToken is a random value that proves a lock is ours.
func newLockToken() string {
	b := make([]byte, 16)
	_, _ = cryptorand.Read(b) // never fails: crypto/rand crashes the program instead
	return hex.EncodeToString(b)
}
