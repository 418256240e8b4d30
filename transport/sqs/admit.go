// Admission on SQS. The Redis gate is then only the fast path: it
// rate-limits, answers duplicates and sets the pending markers
// (Gate.ReserveBatch), and the event is sent to SQS. When Redis cannot
// answer, the admitter fails open: the event is sent without a rate limit or
// fast duplicate check (counted and logged by the caller's OnFailOpen), and
// duplicates are caught exactly by Postgres: a key already stored is answered
// as a duplicate here, and one that races is stored once by the worker
// (UNIQUE idempotency_key).

package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/daybook/daybook/breaker"
	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/redisstream"
)

// KeyLookup finds stored events by idempotency key (ingest.Store).
type KeyLookup interface {
	IDsByKeys(ctx context.Context, keys []string) (map[string]uuid.UUID, error)
}

// AdmitConfig configures an Admitter.
type AdmitConfig struct {
	// Topic is the publisher's name for the work queue (the SQS queue name).
	Topic string
	// PublishParallelMax bounds the sends of one batch in flight at once; default 16.
	PublishParallelMax int
	// OnFailOpen is told how many events were admitted without Redis, and why.
	OnFailOpen func(events int, cause error)
	// RedisBreaker, when set, is opened by a Redis failure (if its probe
	// confirms the outage); while it is open events skip Redis altogether,
	// so that an outage costs requests no time. It closes when Redis answers.
	RedisBreaker *breaker.Breaker
	// OnReleaseError is told when reserved keys of unsent events could not be
	// freed (their retries would be taken for duplicates until the keys expire).
	OnReleaseError func(err error)
}

// Admitter implements the admission port on SQS. Safe for concurrent use.
type Admitter struct {
	gate   *redisstream.Gate
	pub    message.Publisher
	stored KeyLookup
	cfg    AdmitConfig
}

// releaseAttempts bounds the retries of a failed Release.
const releaseAttempts = 3

// NewAdmitter returns an Admitter reserving on g, sending with pub, and looking keys up in stored.
func NewAdmitter(g *redisstream.Gate, pub message.Publisher, stored KeyLookup, cfg AdmitConfig) (*Admitter, error) {
	if g == nil || pub == nil || stored == nil {
		return nil, errors.New("sqs admitter: gate, publisher and key lookup are required")
	}
	if cfg.Topic == "" {
		return nil, errors.New("sqs admitter: topic is required")
	}
	if cfg.PublishParallelMax == 0 {
		cfg.PublishParallelMax = 16
	}
	if cfg.PublishParallelMax < 0 {
		return nil, fmt.Errorf("sqs admitter: PublishParallelMax %d", cfg.PublishParallelMax)
	}
	return &Admitter{gate: g, pub: pub, stored: stored, cfg: cfg}, nil
}

// Admit admits one event; see AdmitBatch.
func (in *Admitter) Admit(ctx context.Context, a transport.Admission) (transport.Result, error) {
	results, err := in.AdmitBatch(ctx, []transport.Admission{a})
	if err != nil {
		return transport.Result{}, err
	}
	return results[0], nil
}

// AdmitBatch has redisstream.Gate.AdmitBatch's contract, with SQS as the queue:
// one Result per item; an item SQS refused is NotAdmitted (its reservation
// released) and the error wraps transport.ErrEnqueue. Items are sent in parallel, so
// items after a refused one may be on the queue: a client retrying the batch
// gets them back as duplicates.
func (in *Admitter) AdmitBatch(ctx context.Context, batch []transport.Admission) ([]transport.Result, error) {
	results, err := in.reserve(ctx, batch)
	reserved := err == nil
	switch {
	case errors.Is(err, redisstream.ErrRedis):
		results = in.admitWithoutRedis(ctx, batch)
		if in.cfg.OnFailOpen != nil {
			in.cfg.OnFailOpen(len(batch), err)
		}
	case err != nil:
		return nil, err
	}

	var send []int
	for i, r := range results {
		if r.Outcome == transport.Accepted {
			send = append(send, i)
		}
	}
	failed := in.send(batch, send)
	if len(failed) == 0 {
		return results, nil
	}
	var unsent []transport.Admission
	var first error
	for _, i := range send {
		if err, ok := failed[i]; ok {
			results[i] = transport.Result{Outcome: transport.NotAdmitted}
			unsent = append(unsent, batch[i])
			if first == nil {
				first = fmt.Errorf("%w: item %d: %w", transport.ErrEnqueue, i, err)
			}
		}
	}
	if reserved {
		in.release(unsent)
	}
	return results, first
}

// reserve is the gate's ReserveBatch unless the breaker knows Redis is down.
func (in *Admitter) reserve(ctx context.Context, batch []transport.Admission) ([]transport.Result, error) {
	b := in.cfg.RedisBreaker
	if b != nil && b.State() == breaker.Open {
		return nil, fmt.Errorf("%w: circuit breaker open", redisstream.ErrRedis)
	}
	results, err := in.gate.ReserveBatch(ctx, batch)
	if b != nil && errors.Is(err, redisstream.ErrRedis) {
		b.Check(ctx, err)
	}
	return results, err
}

// admitWithoutRedis answers what Redis would have from Postgres: stored keys
// are duplicates, and so is a key repeated within the batch. The lookup is
// best effort: if Postgres cannot answer either, every event is sent and the
// worker's UNIQUE constraint keeps one per key.
func (in *Admitter) admitWithoutRedis(ctx context.Context, batch []transport.Admission) []transport.Result {
	keys := make([]string, len(batch))
	for i, a := range batch {
		keys[i] = a.IdempotencyKey
	}
	stored, err := in.stored.IDsByKeys(ctx, keys)
	if err != nil {
		stored = nil
	}
	results := make([]transport.Result, len(batch))
	first := make(map[string]string, len(batch))
	for i, a := range batch {
		if id, ok := stored[a.IdempotencyKey]; ok {
			results[i] = transport.Result{Outcome: transport.Duplicate, EventID: id.String()}
			continue
		}
		if id, ok := first[a.IdempotencyKey]; ok {
			results[i] = transport.Result{Outcome: transport.Duplicate, EventID: id}
			continue
		}
		first[a.IdempotencyKey] = a.EventID
		results[i] = transport.Result{Outcome: transport.Accepted, EventID: a.EventID, MessageID: a.EventID}
	}
	return results
}

// send publishes the listed items, at most PublishParallelMax at a time, and
// returns the error of each one that failed.
func (in *Admitter) send(batch []transport.Admission, items []int) map[int]error {
	var (
		mu     sync.Mutex
		failed = map[int]error{}
		wg     sync.WaitGroup
		slots  = make(chan struct{}, in.cfg.PublishParallelMax)
	)
	for _, i := range items {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			msg, err := toMessage(batch[i])
			if err == nil {
				err = in.pub.Publish(in.cfg.Topic, msg)
			}
			if err != nil {
				mu.Lock()
				failed[i] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

// release frees the reservations of unsent events, retrying a few times:
// a key left behind would answer Duplicate to the client's retry of an event
// that was never queued.
func (in *Admitter) release(unsent []transport.Admission) {
	var err error
	for attempt := range releaseAttempts {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = in.gate.Release(ctx, unsent)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	if in.cfg.OnReleaseError != nil {
		in.cfg.OnReleaseError(err)
	}
}

// Pending is the gate's pending marker of an event.
func (in *Admitter) Pending(ctx context.Context, eventID string) (map[string]string, bool, error) {
	return in.gate.Pending(ctx, eventID)
}

func toMessage(a transport.Admission) (*message.Message, error) {
	msg := message.NewMessage(a.MessageUUID, a.Payload)
	if a.MetadataJSON != "" {
		if err := json.Unmarshal([]byte(a.MetadataJSON), &msg.Metadata); err != nil {
			return nil, fmt.Errorf("metadata of %s: %w", a.EventID, err)
		}
	}
	return msg, nil
}
