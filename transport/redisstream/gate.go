// Package redisstream is the Redis Streams transport, the local default. It
// owns everything about that wire: the admission gate (one Lua round trip per
// request: the client's token-bucket rate limit, deduplication by idempotency
// key, the entry on the work stream and a pending marker that answers
// GET /events/{id} until the worker stored the event), the entry layout, the
// consumer groups and per-process consumer names, claims and their veto,
// depth, trimming, and the event log's stream.
//
// It owns every Redis key under its prefix (ratelimit:, idem:, pending:,
// slot:) and the streams it is given. It knows nothing of HTTP, nor of what
// the messages mean.
//
// Every key one script call touches is passed in KEYS, but the keys of one
// call hash to different slots, so on Redis Cluster KeyPrefix and Stream must
// share a hash tag (e.g. "{daybook}").
package redisstream

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/internal/batcher"
	"github.com/daybook/daybook/transport"
)

// Named limits.
const (
	// rateMin keeps bucket expiry times within what PEXPIRE accepts from Lua.
	rateMin = 1e-6
	// burstMax keeps token counts exact in Lua's doubles and expiry times representable.
	burstMax = 1_000_000
	// bucketIdleMargin is how long an idle bucket outlives its time to fill, so that it is
	// never dropped while still partly empty because of rounding.
	bucketIdleMargin = time.Second
	// idempotencyTTLMin is the resolution of PX.
	idempotencyTTLMin = time.Millisecond
)

// ErrRedis wraps every failure to reach Redis or run a script on it, as
// opposed to a refused admission: callers that can do without Redis (SQS
// mode) fail open on it.
var ErrRedis = errors.New("redis")

// GateConfig configures a Gate. Zero values take the defaults documented on each field.
type GateConfig struct {
	// KeyPrefix is prepended to every key the gate writes (not to Stream).
	KeyPrefix string
	// Stream is the work stream, already prefixed as the consumers know it (e.g. "daybook.events").
	Stream string
	// RatePerSecond is each client's sustained rate in events per second; 0 turns the limit off.
	RatePerSecond float64
	// Burst is the bucket capacity; default RatePerSecond rounded up, at least 1.
	Burst int
	// IdempotencyTTL is how long an idempotency key lives; default 24h.
	IdempotencyTTL time.Duration
	// PendingTTL is how long a pending marker lives: it only answers GET /events/{id} until the worker has
	// stored the event, so it need not live as long as the key; default 1h, at most IdempotencyTTL.
	PendingTTL time.Duration
}

const (
	idempotencyTTLDefault = 24 * time.Hour
	pendingTTLDefault     = time.Hour
)

func (c *GateConfig) setDefaults() {
	if c.Burst == 0 && c.RatePerSecond > 0 {
		c.Burst = max(1, int(math.Ceil(c.RatePerSecond)))
	}
	if c.IdempotencyTTL == 0 {
		c.IdempotencyTTL = idempotencyTTLDefault
	}
	if c.PendingTTL == 0 {
		c.PendingTTL = min(pendingTTLDefault, c.IdempotencyTTL)
	}
}

// Validate reports whether c, with defaults applied, can be used.
func (c GateConfig) Validate() error {
	switch {
	case c.Stream == "":
		return errors.New("stream is required")
	case math.IsNaN(c.RatePerSecond) || math.IsInf(c.RatePerSecond, 0) || c.RatePerSecond < 0:
		return fmt.Errorf("rate per second %v: must be 0 (unlimited) or positive", c.RatePerSecond)
	case c.RatePerSecond > 0 && c.RatePerSecond < rateMin:
		return fmt.Errorf("rate per second %v: below %v", c.RatePerSecond, rateMin)
	case c.Burst < 0 || c.Burst > burstMax:
		return fmt.Errorf("burst %d: must be within 0..%d", c.Burst, burstMax)
	case c.RatePerSecond > 0 && c.Burst < 1:
		return fmt.Errorf("burst %d: must be at least 1 when rate limited", c.Burst)
	case c.IdempotencyTTL < idempotencyTTLMin:
		return fmt.Errorf("idempotency TTL %v: below %v", c.IdempotencyTTL, idempotencyTTLMin)
	case c.PendingTTL < idempotencyTTLMin || c.PendingTTL > c.IdempotencyTTL:
		return fmt.Errorf("pending TTL %v: must be within %v..%v", c.PendingTTL, idempotencyTTLMin, c.IdempotencyTTL)
	}
	return nil
}

// Gate admits events to the work stream. It is safe for concurrent use.
type Gate struct {
	client redis.UniversalClient
	cfg    GateConfig
	admit  *redis.Script
	// singles sends the single admissions of concurrent requests as one
	// pipeline: each still runs its own script, with its own client's rate
	// limit, but they share a round trip (and its write and read syscalls).
	singles *batcher.Batcher[transport.Admission, admitted]
}

type admitted struct {
	result transport.Result
	err    error
}

// Bounds of the shared pipeline of single admissions.
const (
	singlesConcurrency = 2
	singlesMax         = 256
	singlesTimeout     = 5 * time.Second
)

//go:embed admit.lua
var admitLua string

// New returns a Gate on client; cfg's zero fields take their defaults.
func NewGate(client redis.UniversalClient, cfg GateConfig) (*Gate, error) {
	if client == nil {
		return nil, errors.New("new gate: redis client is nil")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new gate: %w", err)
	}
	g := &Gate{client: client, cfg: cfg, admit: redis.NewScript(admitLua)}
	g.singles = batcher.New(singlesConcurrency, singlesMax, g.admitSingles)
	return g, nil
}

// Admit offers one event: rate limit, then deduplication, then enqueue, in one atomic round trip.
//
// A duplicate still takes its rate token: it is a request that costs the server as much as any other,
// and refunding it would let a client retry in a tight loop for free. A rate-limited request is not
// checked for duplication at all. Only an event the stream refuses (transport.ErrEnqueue) gets its token back.
//
// Any Redis or connection failure is returned as an error, never as an Outcome.
func (g *Gate) Admit(ctx context.Context, a transport.Admission) (transport.Result, error) {
	if err := ctx.Err(); err != nil {
		return transport.Result{}, fmt.Errorf("admit: %w", err)
	}
	r := g.singles.Do(a)
	if r.err != nil {
		return transport.Result{}, fmt.Errorf("admit: %w", r.err)
	}
	return r.result, nil
}

// admitSingles runs the admission script once per admission, all in one
// pipeline. A script Redis no longer has (restarted, SCRIPT FLUSH) is sent
// again in full.
func (g *Gate) admitSingles(batch []transport.Admission) []admitted {
	out := make([]admitted, len(batch))
	ctx, cancel := context.WithTimeout(context.Background(), singlesTimeout)
	defer cancel()
	type call struct {
		keys []string
		args []any
		cmd  *redis.Cmd
	}
	calls := make([]*call, len(batch))
	pipe := g.client.Pipeline()
	for i, a := range batch {
		keys, args, err := g.scriptArgs([]transport.Admission{a}, true)
		if err != nil {
			out[i].err = err
			continue
		}
		calls[i] = &call{keys: keys, args: args, cmd: g.admit.EvalSha(ctx, pipe, keys, args...)}
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	resend := g.client.Pipeline()
	for _, c := range calls {
		if c != nil && c.cmd.Err() != nil && strings.HasPrefix(c.cmd.Err().Error(), "NOSCRIPT") {
			c.cmd = g.admit.Eval(ctx, resend, c.keys, c.args...)
		}
	}
	if resend.Len() > 0 {
		_, _ = resend.Exec(ctx)
	}
	for i, c := range calls {
		if c == nil {
			continue
		}
		reply, err := c.cmd.Slice()
		if err != nil {
			out[i].err = fmt.Errorf("%w: run admission script: %w", ErrRedis, err)
			continue
		}
		results, err := parseAdmitReply(reply, batch[i:i+1])
		if err != nil {
			out[i].err = err
			continue
		}
		out[i].result = results[0]
	}
	return out
}

// AdmitBatch admits up to transport.BatchSizeMax events of one client in one atomic round trip and returns one
// Result per item, in order. The rate limit takes len(batch) tokens, all or nothing: if there are not
// enough, every item is RateLimited with the same RetryAfter. Otherwise each item is deduplicated and
// enqueued on its own, in order, so an item repeating an earlier item's key is that item's Duplicate.
//
// If the stream refuses an item, the error wraps transport.ErrEnqueue and the slice is still returned: items
// before it keep their outcome (they are on the stream or were duplicates), it and the rest are
// NotAdmitted, leave no trace and have their tokens given back. Any other error returns no results.
func (g *Gate) AdmitBatch(ctx context.Context, batch []transport.Admission) ([]transport.Result, error) {
	results, err := g.admitBatch(ctx, batch, true)
	if err != nil {
		return results, fmt.Errorf("admit batch: %w", err)
	}
	return results, nil
}

// ReserveBatch is AdmitBatch for a queue other than the work stream (SQS): it
// applies the rate limit, takes the idempotency keys and sets the pending
// markers, but enqueues nothing. Accepted means reserved: the caller must now
// enqueue the event, and Release it if that fails, or its key would answer
// Duplicate for an event that was never queued. Payloads are not sent to Redis.
func (g *Gate) ReserveBatch(ctx context.Context, batch []transport.Admission) ([]transport.Result, error) {
	results, err := g.admitBatch(ctx, batch, false)
	if err != nil {
		return results, fmt.Errorf("reserve batch: %w", err)
	}
	return results, nil
}

//go:embed release.lua
var releaseLua string

var releaseScript = redis.NewScript(releaseLua)

// Release undoes the reservation of events that could not be enqueued: each
// idempotency key is deleted if it still maps to that event (compare and
// delete, so a key taken since by another event is left alone), and each
// pending marker is deleted. The rate tokens stay spent.
func (g *Gate) Release(ctx context.Context, batch []transport.Admission) error {
	if len(batch) == 0 {
		return nil
	}
	keys := make([]string, 0, 2*len(batch))
	args := make([]any, 0, len(batch))
	for _, a := range batch {
		keys = append(keys, g.idemKey(a.IdempotencyKey), g.pendingKey(a.EventID))
		args = append(args, a.EventID)
	}
	if err := releaseScript.Run(ctx, g.client, keys, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("release reservations: %w", err)
	}
	return nil
}

func (g *Gate) admitBatch(ctx context.Context, batch []transport.Admission, enqueue bool) ([]transport.Result, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	keys, args, err := g.scriptArgs(batch, enqueue)
	if err != nil {
		return nil, err
	}
	reply, err := g.admit.Run(ctx, g.client, keys, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("%w: run admission script: %w", ErrRedis, err)
	}
	return parseAdmitReply(reply, batch)
}

// scriptArgs are the admission script's keys and arguments for batch (see admit.lua).
func (g *Gate) scriptArgs(batch []transport.Admission, enqueue bool) ([]string, []any, error) {
	if len(batch) > transport.BatchSizeMax {
		return nil, nil, fmt.Errorf("%w: %d events, at most %d", transport.ErrBatchTooLarge, len(batch), transport.BatchSizeMax)
	}
	rate, burst := g.cfg.RatePerSecond, g.cfg.Burst
	if own := batch[0].RatePerSecond; own > 0 {
		if math.IsInf(own, 0) || own < rateMin {
			return nil, nil, fmt.Errorf("client rate per second %v: must be finite and at least %v", own, rateMin)
		}
		rate, burst = own, min(burstMax, max(1, int(math.Ceil(own))))
	}
	if rate > 0 && len(batch) > burst {
		return nil, nil, fmt.Errorf("%w: %d events, burst %d", transport.ErrBatchOverBurst, len(batch), burst)
	}
	clientID := batch[0].ClientID
	keys := make([]string, 0, 2+2*len(batch))
	keys = append(keys, g.cfg.KeyPrefix+"ratelimit:"+clientID, g.cfg.Stream)
	args := make([]any, 0, 7+len(batch)*(5+2*3))
	args = append(args,
		strconv.FormatFloat(rate, 'g', -1, 64),
		burst,
		g.cfg.IdempotencyTTL.Milliseconds(),
		bucketIdleMargin.Milliseconds(),
		len(batch),
		g.cfg.PendingTTL.Milliseconds(),
		map[bool]int{false: 0, true: 1}[enqueue],
	)
	for i, a := range batch {
		if err := validateAdmission(a); err != nil {
			return nil, nil, fmt.Errorf("item %d: %w", i, err)
		}
		if a.ClientID != clientID {
			return nil, nil, fmt.Errorf("item %d: client id %q differs from the batch's %q", i, a.ClientID, clientID)
		}
		metadata := a.MetadataJSON
		if metadata == "" {
			metadata = "{}"
		}
		keys = append(keys, g.idemKey(a.IdempotencyKey), g.pendingKey(a.EventID))
		payload := a.Payload
		if !enqueue {
			payload = nil
		}
		args = append(args, a.EventID, a.MessageUUID, payload, metadata, len(a.Pending))
		for field, value := range a.Pending {
			args = append(args, field, value)
		}
	}
	return keys, args, nil
}

func validateAdmission(a transport.Admission) error {
	switch {
	case a.ClientID == "":
		return errors.New("client id is required")
	case a.IdempotencyKey == "":
		return errors.New("idempotency key is required")
	case len(a.IdempotencyKey) > transport.IdempotencyKeyLenMax:
		return fmt.Errorf("idempotency key is %d bytes, at most %d", len(a.IdempotencyKey), transport.IdempotencyKeyLenMax)
	case a.EventID == "":
		return errors.New("event id is required")
	case a.MessageUUID == "":
		return errors.New("message uuid is required")
	case len(a.Pending) == 0:
		return errors.New("pending marker needs at least one field")
	case len(a.Pending) > transport.PendingFieldsMax:
		return fmt.Errorf("pending marker has %d fields, at most %d", len(a.Pending), transport.PendingFieldsMax)
	}
	// A metadata field the subscriber cannot decode would send the event to the dead-letter queue.
	if a.MetadataJSON != "" {
		var metadata map[string]string
		if err := json.Unmarshal([]byte(a.MetadataJSON), &metadata); err != nil {
			return fmt.Errorf("metadata is not a JSON object of strings: %w", err)
		}
	}
	return nil
}

// parseAdmitReply turns the script's reply (format in admit.lua) into one Result per item.
func parseAdmitReply(reply []any, batch []transport.Admission) ([]transport.Result, error) {
	if len(reply) < 2 {
		return nil, fmt.Errorf("admission reply has %d elements", len(reply))
	}
	status, _ := reply[0].(string)
	results := make([]transport.Result, len(batch))
	switch status {
	case "R":
		retryMs, ok := reply[1].(int64)
		if !ok || retryMs <= 0 {
			return nil, fmt.Errorf("admission reply: retry after %v", reply[1])
		}
		for i := range results {
			results[i] = transport.Result{Outcome: transport.RateLimited, RetryAfter: time.Duration(retryMs) * time.Millisecond}
		}
		return results, nil
	case "O", "F":
	default:
		return nil, fmt.Errorf("admission reply: status %v", reply[0])
	}

	items := reply[2:]
	if len(items)%2 != 0 || len(items)/2 > len(batch) || (status == "O" && len(items)/2 != len(batch)) {
		return nil, fmt.Errorf("admission reply: %d item elements for %d items", len(items), len(batch))
	}
	for i := 0; i < len(items)/2; i++ {
		kind, _ := items[2*i].(string)
		value, _ := items[2*i+1].(string)
		if value == "" {
			return nil, fmt.Errorf("admission reply: item %d has no value", i)
		}
		switch kind {
		case "A":
			results[i] = transport.Result{Outcome: transport.Accepted, EventID: batch[i].EventID, MessageID: value}
		case "D":
			results[i] = transport.Result{Outcome: transport.Duplicate, EventID: value}
		default:
			return nil, fmt.Errorf("admission reply: item %d kind %v", i, items[2*i])
		}
	}
	if status == "F" {
		return results, fmt.Errorf("%w: item %d: %v", transport.ErrEnqueue, len(items)/2, reply[1])
	}
	return results, nil
}

// Pending returns the pending marker of an event: ok is false once the marker has expired or if the
// event never went through the gate.
func (g *Gate) Pending(ctx context.Context, eventID string) (map[string]string, bool, error) {
	fields, err := g.client.HGetAll(ctx, g.pendingKey(eventID)).Result()
	if err != nil {
		return nil, false, fmt.Errorf("get pending marker: %w", err)
	}
	if len(fields) == 0 {
		return nil, false, nil
	}
	return fields, true, nil
}

// Lookup returns the event id an idempotency key maps to; ok is false if the key is free.
func (g *Gate) Lookup(ctx context.Context, idempotencyKey string) (string, bool, error) {
	eventID, err := g.client.Get(ctx, g.idemKey(idempotencyKey)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up idempotency key: %w", err)
	}
	return eventID, true, nil
}

func (g *Gate) idemKey(idempotencyKey string) string {
	return g.cfg.KeyPrefix + "idem:" + idempotencyKey
}

func (g *Gate) pendingKey(eventID string) string {
	return g.cfg.KeyPrefix + "pending:" + eventID
}
