package redisstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// slotsMax bounds the worker processes of one name (host) that can run at once.
const slotsMax = 64

// slotLease gives a worker process a slot number that no other live process
// of the same name holds, so that its stream consumers (<name>-<slot>-<i>)
// are its own. Two workers on one host used to share every consumer name and
// take each other's pending messages for their own. The lowest free slot is
// taken, so a process restarted after a clean stop gets its slot back and
// finds at once what it left pending; after a crash its old lease expires
// within the TTL, and until then what it left is claimed after ClaimIdle.
type slotLease struct {
	rdb    redis.UniversalClient
	key    string
	token  string
	slot   int
	ttl    time.Duration
	logger *slog.Logger

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// slotRenewScript extends the lease if it is still ours, or takes it back if it
// vanished (Redis restarted without persistence); 0 means another process
// holds it now.
var slotRenewScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); return 1 end
return 0`)

var slotReleaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// leaseSlot takes the lowest free slot of name under prefix and keeps it
// until release.
func leaseSlot(ctx context.Context, rdb redis.UniversalClient, prefix, name string, ttl time.Duration, logger *slog.Logger) (*slotLease, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("slot lease token: %w", err)
	}
	token := hex.EncodeToString(b)
	for slot := range slotsMax {
		key := prefix + "worker-slot:" + name + ":" + strconv.Itoa(slot)
		ok, err := rdb.SetNX(ctx, key, token, ttl).Result()
		if err != nil {
			return nil, fmt.Errorf("lease a worker slot: %w", err)
		}
		if ok {
			l := &slotLease{
				rdb: rdb, key: key, token: token, slot: slot, ttl: ttl, logger: logger,
				stop: make(chan struct{}), done: make(chan struct{}),
			}
			go l.keep() //nolint:gosec // G118: the lease lives until release, past the caller's context; release stops it
			return l, nil
		}
	}
	return nil, fmt.Errorf("lease a worker slot: all %d slots of %q are held by live workers", slotsMax, name)
}

// keep renews the lease three times per TTL until release.
func (l *slotLease) keep() {
	defer close(l.done)
	tick := time.NewTicker(l.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
		n, err := slotRenewScript.Run(ctx, l.rdb, []string{l.key}, l.token, l.ttl.Milliseconds()).Int()
		cancel()
		switch {
		case err != nil:
			l.logger.Warn("worker slot lease not renewed; trying again", "slot", l.slot, "error", err)
		case n == 0:
			// Another process took the slot while this one could not renew
			// (a pause longer than the TTL): both now share consumer names,
			// which costs duplicate attempts, never a duplicate effect.
			l.logger.Error("worker slot taken by another process; consumer names are shared until a restart", "slot", l.slot)
		}
	}
}

// release stops the renewal and frees the slot for the next process.
func (l *slotLease) release() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := slotReleaseScript.Run(ctx, l.rdb, []string{l.key}, l.token).Err(); err != nil && !errors.Is(err, redis.Nil) {
			l.logger.Warn("worker slot not released; it expires by itself", "slot", l.slot, "error", err)
		}
	})
}
