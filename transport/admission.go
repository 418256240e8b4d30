package transport

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Admitter is the API's side of the work queue, the admission port: it
// decides whether ingested events are accepted and puts them on the queue.
//
// Admit and AdmitBatch apply the client's rate limit, deduplicate by
// idempotency key and enqueue. AdmitBatch returns one Result per item, in
// order; the rate limit takes len(batch) tokens, all or nothing. If the queue
// refuses an item, the error wraps ErrEnqueue and the slice is still
// returned: items before it keep their outcome, it and the rest are
// NotAdmitted and leave no trace. Any other error returns no results.
type Admitter interface {
	Admit(ctx context.Context, a Admission) (Result, error)
	AdmitBatch(ctx context.Context, batch []Admission) ([]Result, error)
	// Pending is the marker of an event accepted but not yet stored.
	Pending(ctx context.Context, eventID string) (map[string]string, bool, error)
}

// Limits of one admission call.
const (
	// BatchSizeMax is the most events AdmitBatch takes in one call (the API's batch limit).
	BatchSizeMax = 1000
	// IdempotencyKeyLenMax bounds a key the client chooses (a SHA-256 hex key is 64 bytes).
	IdempotencyKeyLenMax = 256
	// PendingFieldsMax bounds the pending marker, which holds a few fields for GET /events/{id}.
	PendingFieldsMax = 16
)

// Errors callers tell apart.
var (
	// ErrEnqueue means the queue refused an event: nothing of it was kept, so
	// the client may retry it (the API answers 503).
	ErrEnqueue = errors.New("enqueue")
	// ErrBatchTooLarge means a batch holds more than BatchSizeMax events.
	ErrBatchTooLarge = errors.New("batch too large")
	// ErrBatchOverBurst means a batch needs more tokens than the bucket can ever hold, so it could
	// never be admitted and a Retry-After would be a lie.
	ErrBatchOverBurst = errors.New("batch larger than rate limit burst")
)

// Admission is one event offered for admission.
type Admission struct {
	// ClientID names the rate-limit bucket.
	ClientID string
	// RatePerSecond, when above 0, is this client's own rate (its burst equal,
	// rounded up), in place of the configured rate. AdmitBatch takes the first item's.
	RatePerSecond float64
	// IdempotencyKey deduplicates: the first admission with a key wins for IdempotencyTTL.
	IdempotencyKey string
	// EventID is the id the event is stored under; a duplicate reports the original's.
	EventID string
	// MessageUUID, Payload and MetadataJSON become the queued message's uuid, payload and metadata
	// fields. MetadataJSON is a JSON object of strings; empty means "{}".
	MessageUUID  string
	Payload      []byte
	MetadataJSON string
	// Pending are the fields of the pending marker (e.g. idempotency_key, source, type,
	// received_at); at least one, at most PendingFieldsMax.
	Pending map[string]string
}

// Outcome is what admission did with one event.
type Outcome int

const (
	// NotAdmitted is the zero Outcome: nothing of the event was kept. AdmitBatch reports it,
	// next to an ErrEnqueue error, for the items from the first one the queue refused.
	NotAdmitted Outcome = iota
	// Accepted: the event is on the queue (Result.MessageID) and its pending marker is set.
	Accepted
	// Duplicate: the idempotency key was already taken; Result.EventID is the original event's id.
	Duplicate
	// RateLimited: the client is over its rate; retry after Result.RetryAfter.
	RateLimited
)

func (o Outcome) String() string {
	switch o {
	case NotAdmitted:
		return "not_admitted"
	case Accepted:
		return "accepted"
	case Duplicate:
		return "duplicate"
	case RateLimited:
		return "rate_limited"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result is the answer for one admission.
type Result struct {
	Outcome Outcome
	// EventID is the admission's own id when Accepted, the original event's id when Duplicate.
	EventID string
	// MessageID is the wire's id of the queued message when Accepted (a stream entry id, an SQS message id).
	MessageID string
	// RetryAfter is how long until the client's bucket holds the tokens asked for, when RateLimited;
	// millisecond precision, so a Retry-After header rounds it up to whole seconds.
	RetryAfter time.Duration
}
