package redisstream

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/transport"
)

// rateNoRefill is a rate so slow that no token comes back while a test runs.
const rateNoRefill = 0.001

func TestNew_DefaultsAndValidation(t *testing.T) {
	t.Parallel()
	client := testClient(t)

	g, err := NewGate(client, GateConfig{Stream: "s", RatePerSecond: 2.5})
	require.NoError(t, err)
	require.Equal(t, 3, g.cfg.Burst)
	require.Equal(t, 24*time.Hour, g.cfg.IdempotencyTTL)
	require.Equal(t, time.Hour, g.cfg.PendingTTL)

	g, err = NewGate(client, GateConfig{Stream: "s"})
	require.NoError(t, err)
	require.Equal(t, 0, g.cfg.Burst, "no bucket without a rate")

	for name, cfg := range map[string]GateConfig{
		"no stream":      {},
		"negative rate":  {Stream: "s", RatePerSecond: -1},
		"tiny rate":      {Stream: "s", RatePerSecond: 1e-9},
		"negative burst": {Stream: "s", RatePerSecond: 1, Burst: -1},
		"huge burst":     {Stream: "s", RatePerSecond: 1, Burst: burstMax + 1},
		"sub-ms TTL":     {Stream: "s", IdempotencyTTL: time.Microsecond},
	} {
		_, err := NewGate(client, cfg)
		require.Error(t, err, name)
	}
	_, err = NewGate(nil, GateConfig{Stream: "s"})
	require.Error(t, err)
}

func TestAdmit_AcceptedPutsExactEntryOnStreamAndSetsPendingMarker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{IdempotencyTTL: time.Hour, PendingTTL: time.Minute})

	a := testAdmission("client-1", "key-1")
	a.Payload = []byte("\x00binary\xff payload")
	res, err := g.Admit(ctx, a)
	require.NoError(t, err)
	require.Equal(t, transport.Accepted, res.Outcome)
	require.Equal(t, a.EventID, res.EventID)
	require.NotEmpty(t, res.MessageID)

	entries, err := client.XRange(ctx, cfg.Stream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, res.MessageID, entries[0].ID)
	require.Equal(t, map[string]any{
		"uuid":     a.MessageUUID,
		"payload":  string(a.Payload),
		"metadata": a.MetadataJSON,
	}, entries[0].Values)

	pending, ok, err := g.Pending(ctx, a.EventID)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, a.Pending, pending)

	eventID, ok, err := g.Lookup(ctx, a.IdempotencyKey)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, a.EventID, eventID)

	for key, limit := range map[string]time.Duration{cfg.KeyPrefix + "idem:key-1": time.Hour, cfg.KeyPrefix + "pending:" + a.EventID: time.Minute} {
		ttl, err := client.PTTL(ctx, key).Result()
		require.NoError(t, err)
		require.Greater(t, ttl, limit-time.Minute/2, key)
		require.LessOrEqual(t, ttl, limit, key)
	}
	exists, err := client.Exists(ctx, cfg.KeyPrefix+"ratelimit:client-1").Result()
	require.NoError(t, err)
	require.Zero(t, exists, "no bucket without a rate limit")
}

func TestAdmit_EmptyMetadataIsAnEmptyObject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{})

	a := testAdmission("client-1", "key-1")
	a.MetadataJSON = ""
	_, err := g.Admit(ctx, a)
	require.NoError(t, err)

	entries, err := client.XRange(ctx, cfg.Stream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, "{}", entries[0].Values["metadata"])
}

func TestAdmit_DuplicateReturnsOriginalIDAndAddsNoEntry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{})

	first := testAdmission("client-1", "key-1")
	res, err := g.Admit(ctx, first)
	require.NoError(t, err)
	require.Equal(t, transport.Accepted, res.Outcome)

	again := testAdmission("client-1", "key-1")
	res, err = g.Admit(ctx, again)
	require.NoError(t, err)
	require.Equal(t, transport.Result{Outcome: transport.Duplicate, EventID: first.EventID}, res)

	length, err := client.XLen(ctx, cfg.Stream).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, length)
	_, ok, err := g.Pending(ctx, again.EventID)
	require.NoError(t, err)
	require.False(t, ok, "a duplicate leaves no pending marker")
}

func TestAdmit_ConcurrentSameKeyAcceptsExactlyOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{})

	const goroutines = 100
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]transport.Result, goroutines)
		errs    = make([]error, goroutines)
	)
	for i := range goroutines {
		wg.Go(func() {
			<-start
			results[i], errs[i] = g.Admit(ctx, testAdmission("client-1", "same-key"))
		})
	}
	close(start)
	wg.Wait()

	counts := map[transport.Outcome]int{}
	var acceptedID string
	for i, res := range results {
		require.NoError(t, errs[i])
		counts[res.Outcome]++
		if res.Outcome == transport.Accepted {
			acceptedID = res.EventID
		}
	}
	require.Equal(t, map[transport.Outcome]int{transport.Accepted: 1, transport.Duplicate: goroutines - 1}, counts)
	for _, res := range results {
		require.Equal(t, acceptedID, res.EventID)
	}
	length, err := client.XLen(ctx, cfg.Stream).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, length)
}

func TestAdmit_RateLimitedUntilRetryAfter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{RatePerSecond: 5, Burst: 5})

	for i := range 5 {
		res, err := g.Admit(ctx, testAdmission("client-1", "key-"+strconv.Itoa(i)))
		require.NoError(t, err)
		require.Equal(t, transport.Accepted, res.Outcome, "event %d", i)
	}
	limited := testAdmission("client-1", "key-limited")
	res, err := g.Admit(ctx, limited)
	require.NoError(t, err)
	require.Equal(t, transport.RateLimited, res.Outcome)
	require.Greater(t, res.RetryAfter, time.Duration(0))
	require.LessOrEqual(t, res.RetryAfter, time.Second)
	_, ok, err := g.Lookup(ctx, limited.IdempotencyKey)
	require.NoError(t, err)
	require.False(t, ok, "a rate-limited event takes no idempotency key")

	ttl, err := client.PTTL(ctx, cfg.KeyPrefix+"ratelimit:client-1").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, time.Duration(0), "an idle bucket expires")
	require.LessOrEqual(t, ttl, time.Second+bucketIdleMargin)

	other, err := g.Admit(ctx, testAdmission("client-2", "key-other"))
	require.NoError(t, err)
	require.Equal(t, transport.Accepted, other.Outcome, "each client has its own bucket")

	time.Sleep(res.RetryAfter)
	res, err = g.Admit(ctx, limited)
	require.NoError(t, err)
	require.Equal(t, transport.Accepted, res.Outcome)
}

func TestAdmit_ClientsOwnRateReplacesTheDefault(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, _, _ := newTestGate(t, GateConfig{RatePerSecond: 100})

	// A client with its own rate of 2/s gets a burst of 2, whatever the default.
	for i := range 2 {
		a := testAdmission("slow-key", "slow-"+strconv.Itoa(i))
		a.RatePerSecond = 2
		res, err := g.Admit(ctx, a)
		require.NoError(t, err)
		require.Equal(t, transport.Accepted, res.Outcome, "event %d", i)
	}
	a := testAdmission("slow-key", "slow-limited")
	a.RatePerSecond = 2
	res, err := g.Admit(ctx, a)
	require.NoError(t, err)
	require.Equal(t, transport.RateLimited, res.Outcome)

	// A batch over the client's own burst is refused as a whole.
	batch := []transport.Admission{testAdmission("slow-key", "b-1"), testAdmission("slow-key", "b-2"), testAdmission("slow-key", "b-3")}
	batch[0].RatePerSecond = 2
	_, err = g.AdmitBatch(ctx, batch)
	require.ErrorIs(t, err, transport.ErrBatchOverBurst)

	// Without its own rate a client keeps the default (100/s).
	for i := range 10 {
		res, err := g.Admit(ctx, testAdmission("default-key", "d-"+strconv.Itoa(i)))
		require.NoError(t, err)
		require.Equal(t, transport.Accepted, res.Outcome)
	}
}

func TestAdmit_DuplicateConsumesRateToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, _, _ := newTestGate(t, GateConfig{RatePerSecond: rateNoRefill, Burst: 2})

	res, err := g.Admit(ctx, testAdmission("client-1", "key-1"))
	require.NoError(t, err)
	require.Equal(t, transport.Accepted, res.Outcome)
	res, err = g.Admit(ctx, testAdmission("client-1", "key-1"))
	require.NoError(t, err)
	require.Equal(t, transport.Duplicate, res.Outcome)

	res, err = g.Admit(ctx, testAdmission("client-1", "key-2"))
	require.NoError(t, err)
	require.Equal(t, transport.RateLimited, res.Outcome, "the duplicate took the second token")
	res, err = g.Admit(ctx, testAdmission("client-1", "key-1"))
	require.NoError(t, err)
	require.Equal(t, transport.RateLimited, res.Outcome, "a rate-limited duplicate is not recognised")
}

func TestAdmit_EnqueueFailureLeavesNoTraceAndRefundsToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{RatePerSecond: rateNoRefill, Burst: 1})
	require.NoError(t, client.Set(ctx, cfg.Stream, "x", 0).Err()) // XADD answers WRONGTYPE

	a := testAdmission("client-1", "key-1")
	res, err := g.Admit(ctx, a)
	require.ErrorIs(t, err, transport.ErrEnqueue)
	require.ErrorContains(t, err, "WRONGTYPE")
	require.Equal(t, transport.Result{}, res)

	_, ok, err := g.Lookup(ctx, a.IdempotencyKey)
	require.NoError(t, err)
	require.False(t, ok, "the retry must not be taken for a duplicate")
	_, ok, err = g.Pending(ctx, a.EventID)
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, client.Del(ctx, cfg.Stream).Err())
	res, err = g.Admit(ctx, a)
	require.NoError(t, err)
	require.Equal(t, transport.Accepted, res.Outcome, "the only token was given back")
}

func TestAdmit_ConnectionErrorIsAnError(t *testing.T) {
	t.Parallel()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := listener.Addr().String()
	require.NoError(t, listener.Close())
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, DialerRetries: 1})
	t.Cleanup(func() { _ = client.Close() })
	g, err := NewGate(client, GateConfig{Stream: "events", RatePerSecond: 10})
	require.NoError(t, err)
	ctx := context.Background()

	res, err := g.Admit(ctx, testAdmission("client-1", "key-1"))
	require.Error(t, err)
	require.NotErrorIs(t, err, transport.ErrEnqueue)
	require.Equal(t, transport.Result{}, res)

	results, err := g.AdmitBatch(ctx, []transport.Admission{testAdmission("client-1", "key-1")})
	require.Error(t, err)
	require.Nil(t, results)
	_, _, err = g.Lookup(ctx, "key-1")
	require.Error(t, err)
	_, _, err = g.Pending(ctx, "event-1")
	require.Error(t, err)
}

func TestAdmit_RejectsInvalidAdmissionWithoutRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{})

	for name, change := range map[string]func(*transport.Admission){
		"no client id":       func(a *transport.Admission) { a.ClientID = "" },
		"no idempotency key": func(a *transport.Admission) { a.IdempotencyKey = "" },
		"long idempotency": func(a *transport.Admission) {
			a.IdempotencyKey = string(make([]byte, transport.IdempotencyKeyLenMax+1))
		},
		"no event id":         func(a *transport.Admission) { a.EventID = "" },
		"no message uuid":     func(a *transport.Admission) { a.MessageUUID = "" },
		"no pending fields":   func(a *transport.Admission) { a.Pending = nil },
		"metadata not object": func(a *transport.Admission) { a.MetadataJSON = `["a"]` },
		"metadata not string": func(a *transport.Admission) { a.MetadataJSON = `{"a":1}` },
		"too many fields": func(a *transport.Admission) {
			for i := range transport.PendingFieldsMax {
				a.Pending["f"+strconv.Itoa(i)] = "v"
			}
		},
	} {
		a := testAdmission("client-1", "key-1")
		change(&a)
		_, err := g.Admit(ctx, a)
		require.Error(t, err, name)
	}
	exists, err := client.Exists(ctx, cfg.Stream, cfg.KeyPrefix+"idem:key-1").Result()
	require.NoError(t, err)
	require.Zero(t, exists)
}

func TestAdmitBatch_RepeatedKeyIsDuplicateOfEarlierItem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{RatePerSecond: rateNoRefill, Burst: 10})

	batch := []transport.Admission{
		testAdmission("client-1", "key-1"),
		testAdmission("client-1", "key-2"),
		testAdmission("client-1", "key-1"),
	}
	results, err := g.AdmitBatch(ctx, batch)
	require.NoError(t, err)
	require.Len(t, results, 3)
	require.Equal(t, transport.Accepted, results[0].Outcome)
	require.Equal(t, batch[0].EventID, results[0].EventID)
	require.Equal(t, transport.Accepted, results[1].Outcome)
	require.Equal(t, batch[1].EventID, results[1].EventID)
	require.Equal(t, transport.Result{Outcome: transport.Duplicate, EventID: batch[0].EventID}, results[2])

	entries, err := client.XRange(ctx, cfg.Stream, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 2)
	require.Equal(t, results[0].MessageID, entries[0].ID)
	require.Equal(t, batch[0].MessageUUID, entries[0].Values["uuid"])
	require.Equal(t, results[1].MessageID, entries[1].ID)
	require.Equal(t, batch[1].MessageUUID, entries[1].Values["uuid"])

	tokens, err := client.HGet(ctx, cfg.KeyPrefix+"ratelimit:client-1", "tokens").Float64()
	require.NoError(t, err)
	require.InDelta(t, 7, tokens, 0.01, "three items take three tokens")

	empty, err := g.AdmitBatch(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, empty)
}

func TestAdmitBatch_OverRateLimitsEveryItemAndTakesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{RatePerSecond: rateNoRefill, Burst: 5})

	for i := range 3 {
		res, err := g.Admit(ctx, testAdmission("client-1", "single-"+strconv.Itoa(i)))
		require.NoError(t, err)
		require.Equal(t, transport.Accepted, res.Outcome)
	}
	batch := []transport.Admission{
		testAdmission("client-1", "batch-0"),
		testAdmission("client-1", "batch-1"),
		testAdmission("client-1", "batch-2"),
	}
	results, err := g.AdmitBatch(ctx, batch)
	require.NoError(t, err)
	require.Len(t, results, 3)
	for i, res := range results {
		require.Equal(t, transport.RateLimited, res.Outcome, "item %d", i)
		require.Greater(t, res.RetryAfter, time.Duration(0))
		require.Equal(t, results[0].RetryAfter, res.RetryAfter)
	}
	for _, a := range batch {
		_, ok, err := g.Lookup(ctx, a.IdempotencyKey)
		require.NoError(t, err)
		require.False(t, ok)
	}
	length, err := client.XLen(ctx, cfg.Stream).Result()
	require.NoError(t, err)
	require.EqualValues(t, 3, length)

	results, err = g.AdmitBatch(ctx, batch[:2])
	require.NoError(t, err)
	require.Equal(t, transport.Accepted, results[0].Outcome, "the limited batch took no token")
	require.Equal(t, transport.Accepted, results[1].Outcome)
}

func TestAdmitBatch_EnqueueFailureKeepsEarlierItemsAndRefundsTheRest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{RatePerSecond: rateNoRefill, Burst: 4})

	first := testAdmission("client-1", "key-0")
	res, err := g.Admit(ctx, first)
	require.NoError(t, err)
	require.Equal(t, transport.Accepted, res.Outcome)
	require.NoError(t, client.Del(ctx, cfg.Stream).Err())
	require.NoError(t, client.Set(ctx, cfg.Stream, "x", 0).Err()) // XADD answers WRONGTYPE

	batch := []transport.Admission{
		testAdmission("client-1", "key-0"),
		testAdmission("client-1", "key-1"),
		testAdmission("client-1", "key-2"),
	}
	results, err := g.AdmitBatch(ctx, batch)
	require.ErrorIs(t, err, transport.ErrEnqueue)
	require.Equal(t, []transport.Result{{Outcome: transport.Duplicate, EventID: first.EventID}, {}, {}}, results)
	for _, a := range batch[1:] {
		_, ok, err := g.Lookup(ctx, a.IdempotencyKey)
		require.NoError(t, err)
		require.False(t, ok)
	}

	// 4 tokens - 1 (first) - 3 (batch) + 2 (refund of the two not admitted) = 2 left.
	require.NoError(t, client.Del(ctx, cfg.Stream).Err())
	results, err = g.AdmitBatch(ctx, batch[1:])
	require.NoError(t, err)
	require.Equal(t, transport.Accepted, results[0].Outcome)
	require.Equal(t, transport.Accepted, results[1].Outcome)
	res, err = g.Admit(ctx, testAdmission("client-1", "key-3"))
	require.NoError(t, err)
	require.Equal(t, transport.RateLimited, res.Outcome)
}

func TestAdmitBatch_LimitsAreCheckedBeforeRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{RatePerSecond: 10, Burst: 3})

	tooMany := make([]transport.Admission, transport.BatchSizeMax+1)
	for i := range tooMany {
		tooMany[i] = testAdmission("client-1", "key-"+strconv.Itoa(i))
	}
	_, err := g.AdmitBatch(ctx, tooMany)
	require.ErrorIs(t, err, transport.ErrBatchTooLarge)

	_, err = g.AdmitBatch(ctx, tooMany[:4])
	require.ErrorIs(t, err, transport.ErrBatchOverBurst)

	mixed := []transport.Admission{testAdmission("client-1", "key-a"), testAdmission("client-2", "key-b")}
	_, err = g.AdmitBatch(ctx, mixed)
	require.ErrorContains(t, err, "client id")

	exists, err := client.Exists(ctx, cfg.Stream, cfg.KeyPrefix+"ratelimit:client-1").Result()
	require.NoError(t, err)
	require.Zero(t, exists)
}

func TestPending_UnknownEventIsNotOK(t *testing.T) {
	t.Parallel()
	g, _, _ := newTestGate(t, GateConfig{})

	fields, ok, err := g.Pending(context.Background(), uuid.NewString())
	require.NoError(t, err)
	require.False(t, ok)
	require.Nil(t, fields)
}

func TestOutcome_String(t *testing.T) {
	t.Parallel()
	require.Equal(t, "accepted", transport.Accepted.String())
	require.Equal(t, "duplicate", transport.Duplicate.String())
	require.Equal(t, "rate_limited", transport.RateLimited.String())
	require.Equal(t, "not_admitted", transport.NotAdmitted.String())
	require.Equal(t, "outcome(9)", transport.Outcome(9).String())
	require.False(t, errors.Is(transport.ErrBatchTooLarge, transport.ErrEnqueue))
}

func BenchmarkAdmit(b *testing.B) {
	ctx := context.Background()
	g, _, _ := newTestGate(b, GateConfig{RatePerSecond: 1e6, Burst: burstMax})
	payload := make([]byte, 512)

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a := testAdmission("bench-client", uuid.NewString())
			a.Payload = payload
			res, err := g.Admit(ctx, a)
			if err != nil || res.Outcome != transport.Accepted {
				b.Errorf("admit: %v %v", res.Outcome, err)
				return
			}
		}
	})
}

func BenchmarkAdmitBatch100(b *testing.B) {
	const batchSize = 100
	ctx := context.Background()
	g, _, _ := newTestGate(b, GateConfig{})
	payload := make([]byte, 512)

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		batch := make([]transport.Admission, batchSize)
		for pb.Next() {
			for i := range batch {
				batch[i] = testAdmission("bench-client", uuid.NewString())
				batch[i].Payload = payload
			}
			if _, err := g.AdmitBatch(ctx, batch); err != nil {
				b.Errorf("admit batch: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/event")
}

// Single admissions travel as one pipeline of EVALSHA: when Redis no longer
// has the script (restarted, SCRIPT FLUSH) each is sent again in full.
func TestAdmit_ScriptRedisForgotIsSentAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, client, cfg := newTestGate(t, GateConfig{})
	require.NoError(t, client.ScriptFlush(ctx).Err())

	var wg sync.WaitGroup
	results := make([]transport.Result, 20)
	errs := make([]error, 20)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = g.Admit(ctx, testAdmission("client-1", "flushed-"+strconv.Itoa(i))) })
	}
	wg.Wait()
	for i := range results {
		require.NoError(t, errs[i], "admission %d", i)
		require.Equal(t, transport.Accepted, results[i].Outcome, "admission %d", i)
	}
	length, err := client.XLen(ctx, cfg.Stream).Result()
	require.NoError(t, err)
	require.EqualValues(t, 20, length)
}

// Concurrent single admissions share round trips, not rate limits: each
// client still gets exactly its own burst.
func TestAdmit_ConcurrentClientsEachKeepTheirOwnBucket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, _, _ := newTestGate(t, GateConfig{RatePerSecond: 0.001, Burst: 10})

	const perClient = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := map[string]int{}
	start := make(chan struct{})
	for _, client := range []string{"client-a", "client-b", "client-c"} {
		for i := range perClient {
			wg.Go(func() {
				<-start
				res, err := g.Admit(ctx, testAdmission(client, client+"-"+strconv.Itoa(i)))
				require.NoError(t, err)
				if res.Outcome == transport.Accepted {
					mu.Lock()
					accepted[client]++
					mu.Unlock()
				}
			})
		}
	}
	close(start)
	wg.Wait()
	require.Equal(t, map[string]int{"client-a": 10, "client-b": 10, "client-c": 10}, accepted)
}
