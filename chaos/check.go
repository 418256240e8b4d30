package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/logevent"
	"github.com/daybook/daybook/projections"
	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/redisstream"
)

const (
	settlePoll = 250 * time.Millisecond
	// settleCalmPolls: the system counts as settled after this many quiet polls in a row.
	settleCalmPolls = 3
	// problemsShownMax bounds the lines one kind of problem prints.
	problemsShownMax = 5
	reconcileTimeout = 2 * time.Minute
)

// target is one scenario's stores, as the checks reach them.
type target struct {
	pool   *pgxpool.Pool
	rdb    *redis.Client
	prefix string // the scenario's Redis key prefix
	// sqs, when set, holds the work queue instead of the Redis stream.
	sqs *sqsQueues
}

func (tg target) stream() string { return transport.Topics{Prefix: tg.prefix}.Events() }

// backlog is what is still on its way through the system.
type backlog struct {
	unfinished    int64 // ingestion_events PENDING or PROCESSING
	lag, pending  int64 // the work queue: stream lag and pending of group daybook-worker, or SQS's depth as lag
	outbox        int64
	missingStored int   // accepted keys with no row yet
	unprojected   int64 // transfer-completed log events the daily totals have not applied
}

func (b backlog) String() string {
	return fmt.Sprintf("%d PENDING/PROCESSING rows, queue lag %d + pending %d, outbox %d, %d accepted events without a row, %d transfers not projected",
		b.unfinished, b.lag, b.pending, b.outbox, b.missingStored, b.unprojected)
}

func (b backlog) empty() bool {
	return b.unfinished == 0 && b.lag == 0 && b.pending == 0 && b.outbox == 0 && b.missingStored == 0 && b.unprojected == 0
}

// settle waits until nothing is on its way (see backlog) for settleCalmPolls
// polls in a row, or timeout. It returns the last backlog seen.
func settle(ctx context.Context, tg target, accepted []string, timeout time.Duration) (backlog, error) {
	deadline := time.Now().Add(timeout)
	calm := 0
	var last backlog
	for {
		b, err := readBacklog(ctx, tg, accepted)
		if err == nil {
			last = b
			if b.empty() {
				calm++
			} else {
				calm = 0
			}
			if calm >= settleCalmPolls {
				return b, nil
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return last, fmt.Errorf("not settled after %s: %w", timeout, err)
			}
			return last, fmt.Errorf("not settled after %s: %s", timeout, last)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(settlePoll):
		}
	}
}

func readBacklog(ctx context.Context, tg target, accepted []string) (backlog, error) {
	var b backlog
	err := tg.pool.QueryRow(ctx, `SELECT count(*) FROM ingestion_events WHERE status IN ('PENDING', 'PROCESSING')`).Scan(&b.unfinished)
	if err != nil {
		return b, fmt.Errorf("count unfinished events: %w", err)
	}
	if tg.sqs != nil {
		if b.lag, err = tg.sqs.depth(ctx); err != nil {
			return b, err
		}
	} else if b.lag, b.pending, err = redisstream.StreamDepth(ctx, tg.rdb, tg.stream(), transport.WorkGroup); err != nil {
		return b, err
	}
	// The event log reaches the projections through the queue (the relay,
	// then group daybook-projections): every completed transfer is applied.
	err = tg.pool.QueryRow(ctx, `SELECT count(*) FROM event_log l WHERE l.event_type = $1
		AND NOT EXISTS (SELECT 1 FROM projection_applied p WHERE p.projection = $2 AND p.event_id = l.event_id)`,
		logevent.TypeTransferCompleted, projections.DailyTotals).Scan(&b.unprojected)
	if err != nil {
		return b, fmt.Errorf("count transfers not projected: %w", err)
	}
	if b.outbox, err = eventstore.Backlog(ctx, tg.pool); err != nil {
		return b, err
	}
	err = tg.pool.QueryRow(ctx, `SELECT count(*) FROM unnest($1::text[]) AS k(key)
		WHERE NOT EXISTS (SELECT 1 FROM ingestion_events e WHERE e.idempotency_key = k.key)`, accepted).Scan(&b.missingStored)
	if err != nil {
		return b, fmt.Errorf("count accepted events without a row: %w", err)
	}
	return b, nil
}

// storedEvent is one ingestion_events row with what its processing wrote.
type storedEvent struct {
	id, status  string
	logRows     int // event_log rows of its stream ingest-<id>
	deadLetters int // dead_letters rows naming it
}

type storedTransfer struct {
	id, from, to string
	amount       decimal.Decimal
}

type entrySum struct {
	count int
	sum   decimal.Decimal
}

// parked is a work-stream entry delivered to a consumer and never acknowledged.
type parked struct {
	entryID, consumer string
	idle              time.Duration
	deliveries        int64
}

// stored is what Postgres holds after a scenario, read directly from the
// tables, with the events still parked in the work stream.
type stored struct {
	parked       map[string]parked      // by idempotency key
	events       map[string]storedEvent // by idempotency key
	strayLetters int                    // dead letters naming no stored event
	transfers    map[string]storedTransfer
	entries      map[string]entrySum        // by transfer id
	balances     map[string]decimal.Decimal // by account id
}

// collect reads every table the checks need in one repeatable-read snapshot.
func collect(ctx context.Context, pool *pgxpool.Pool) (stored, error) {
	s := stored{
		events: map[string]storedEvent{}, transfers: map[string]storedTransfer{},
		entries: map[string]entrySum{}, balances: map[string]decimal.Decimal{},
	}
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		byID := map[string]string{} // event id -> key
		if err := each(ctx, tx, `SELECT idempotency_key, id::text, status FROM ingestion_events`, func(r pgx.Rows) error {
			var key string
			var e storedEvent
			if err := r.Scan(&key, &e.id, &e.status); err != nil {
				return err
			}
			s.events[key], byID[e.id] = e, key
			return nil
		}); err != nil {
			return fmt.Errorf("read ingestion_events: %w", err)
		}
		if err := each(ctx, tx, `SELECT substr(stream_id, 8), count(*) FROM event_log WHERE stream_id LIKE 'ingest-%' GROUP BY stream_id`, func(r pgx.Rows) error {
			var id string
			var n int
			if err := r.Scan(&id, &n); err != nil {
				return err
			}
			if key, ok := byID[id]; ok {
				e := s.events[key]
				e.logRows = n
				s.events[key] = e
			}
			return nil
		}); err != nil {
			return fmt.Errorf("read event_log: %w", err)
		}
		if err := each(ctx, tx, `SELECT coalesce(event_id::text, ''), count(*) FROM dead_letters GROUP BY event_id`, func(r pgx.Rows) error {
			var id string
			var n int
			if err := r.Scan(&id, &n); err != nil {
				return err
			}
			key, ok := byID[id]
			if !ok {
				s.strayLetters += n
				return nil
			}
			e := s.events[key]
			e.deadLetters = n
			s.events[key] = e
			return nil
		}); err != nil {
			return fmt.Errorf("read dead_letters: %w", err)
		}
		if err := each(ctx, tx, `SELECT idempotency_key, id::text, from_account_id::text, to_account_id::text, amount::text FROM transfers`, func(r pgx.Rows) error {
			var key, amount string
			var t storedTransfer
			if err := r.Scan(&key, &t.id, &t.from, &t.to, &amount); err != nil {
				return err
			}
			var err error
			t.amount, err = decimal.NewFromString(amount)
			s.transfers[key] = t
			return err
		}); err != nil {
			return fmt.Errorf("read transfers: %w", err)
		}
		if err := each(ctx, tx, `SELECT transaction_id::text, count(*), sum(amount)::text FROM ledger_entries GROUP BY transaction_id`, func(r pgx.Rows) error {
			var id, sum string
			var e entrySum
			if err := r.Scan(&id, &e.count, &sum); err != nil {
				return err
			}
			var err error
			e.sum, err = decimal.NewFromString(sum)
			s.entries[id] = e
			return err
		}); err != nil {
			return fmt.Errorf("read ledger_entries: %w", err)
		}
		if err := each(ctx, tx, `SELECT a.id::text, b.balance::text FROM accounts a LEFT JOIN account_balances b ON b.account_id = a.id`, func(r pgx.Rows) error {
			var id string
			var bal *string
			if err := r.Scan(&id, &bal); err != nil {
				return err
			}
			if bal == nil {
				return nil // reported by the balance check as "no balance row"
			}
			d, err := decimal.NewFromString(*bal)
			s.balances[id] = d
			return err
		}); err != nil {
			return fmt.Errorf("read account_balances: %w", err)
		}
		return nil
	})
	return s, err
}

// parkedEntriesMax bounds how many pending entries parkedEvents reads.
const parkedEntriesMax = 1000

// parkedEvents maps the idempotency key of every entry pending in the work
// stream's group to where it is parked. A missing stream or group parks
// nothing (redisstream.StreamDepth counts its every entry as lag); it reports whether
// the group exists.
func parkedEvents(ctx context.Context, tg target) (map[string]parked, bool, error) {
	stream := tg.stream()
	pending, err := tg.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: stream, Group: transport.WorkGroup, Start: "-", End: "+", Count: parkedEntriesMax,
	}).Result()
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("pending entries of %s: %w", stream, err)
	}
	out := map[string]parked{}
	for _, p := range pending {
		msgs, err := tg.rdb.XRange(ctx, stream, p.ID, p.ID).Result()
		if err != nil {
			return nil, true, fmt.Errorf("read entry %s: %w", p.ID, err)
		}
		key := "(entry " + p.ID + " is gone)"
		if len(msgs) == 1 {
			var body struct {
				Key string `json:"idempotency_key"`
			}
			payload, _ := msgs[0].Values[redisstream.FieldPayload].(string)
			if json.Unmarshal([]byte(payload), &body) == nil && body.Key != "" {
				key = body.Key
			}
		}
		out[key] = parked{entryID: p.ID, consumer: p.Consumer, idle: p.Idle, deliveries: p.RetryCount}
	}
	return out, true, nil
}

func each(ctx context.Context, tx pgx.Tx, sql string, row func(pgx.Rows) error) error {
	rows, err := tx.Query(ctx, sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// tally compares what the client learned with what Postgres holds and fills
// the figures and problems of r. A problem is anything that fails the run.
func tally(r *result, events []*eventRecord, transfers []*transferRecord, accounts []string, s stored) {
	tallyEvents(r, events, s)
	tallyTransfers(r, transfers, accounts, s)
}

func tallyEvents(r *result, events []*eventRecord, s stored) {
	ours := map[string]bool{}
	for _, rec := range events {
		ours[rec.key] = true
		r.events.sent++
		row, isStored := s.events[rec.key]
		if rec.outcome == outcomeOK {
			r.events.accepted++
			p, isParked := s.parked[rec.key]
			switch {
			case !isStored && isParked:
				r.events.stuck++
				r.problem("stuck", "event %s was answered 202/200 (id %s) and has no row: its stream entry %s was delivered to consumer %s %s ago (%d deliveries) and was never acknowledged nor claimed back",
					rec.key, idList(rec.ids), p.entryID, p.consumer, p.idle.Round(time.Second), p.deliveries)
			case !isStored:
				r.events.lost++
				r.problem("lost", "event %s was answered 202/200 (id %s) and has no row, nor an entry pending in the stream", rec.key, idList(rec.ids))
			case !rec.ids[row.id]:
				r.events.lost++
				r.problem("lost", "event %s was answered with id %s but is stored as %s", rec.key, idList(rec.ids), row.id)
			}
			admittedAgain := len(rec.ids) > 1 || rec.admitted > 1
			switch {
			case admittedAgain && r.failOpen && isStored && rec.ids[row.id]:
				r.events.readmitted++
			case admittedAgain:
				r.events.duplicated++
				r.problem("duplicate", "event %s was admitted %d times (202) with ids %s", rec.key, rec.admitted, idList(rec.ids))
			}
		} else if isStored {
			r.events.storedUnconfirmed++
		}
		if rec.poison {
			r.events.poison++
		}
		if !isStored {
			continue
		}
		switch row.status {
		case "COMPLETED":
			r.events.completed++
			if row.logRows == 0 {
				r.events.lost++
				r.problem("lost", "event %s is COMPLETED without its event_log row (its effects are missing)", rec.key)
			}
			if row.logRows > 1 {
				r.events.duplicated++
				r.problem("duplicate", "event %s was processed %d times (event_log rows)", rec.key, row.logRows)
			}
			if row.deadLetters > 0 || rec.poison {
				r.problem("state", "event %s is COMPLETED but poison=%v and has %d dead letters", rec.key, rec.poison, row.deadLetters)
			}
		case "FAILED":
			r.events.deadLettered++
			if row.deadLetters == 0 {
				r.events.stuck++
				r.problem("stuck", "event %s is FAILED without a dead letter", rec.key)
			}
			if row.logRows > 0 {
				r.events.duplicated++
				r.problem("duplicate", "event %s is FAILED but wrote %d event_log rows", rec.key, row.logRows)
			}
			if !rec.poison {
				r.events.validDeadLettered++
			}
		default:
			r.events.stuck++
			r.problem("stuck", "event %s is still %s after the system settled", rec.key, row.status)
		}
	}
	for key := range s.events {
		if !ours[key] {
			r.events.duplicated++
			r.problem("duplicate", "ingestion_events holds key %q, which the client never sent", key)
		}
	}
	r.events.strayLetters = s.strayLetters
}

func tallyTransfers(r *result, transfers []*transferRecord, accounts []string, s stored) {
	ours := map[string]bool{}
	expected := map[string]decimal.Decimal{}
	for _, rec := range transfers {
		ours[rec.key] = true
		r.transfers.sent++
		row, isStored := s.transfers[rec.key]
		amount, err := decimal.NewFromString(rec.amount)
		if err != nil {
			r.problem("client", "transfer %s: amount %q: %v", rec.key, rec.amount, err)
			continue
		}
		switch rec.outcome {
		case outcomeOK:
			r.transfers.ok++
			switch {
			case !isStored:
				r.transfers.lost++
				r.problem("lost", "transfer %s was answered 201/200 (id %s) and has no row", rec.key, idList(rec.ids))
			case !rec.ids[row.id] || row.from != accounts[rec.from] || row.to != accounts[rec.to] || !row.amount.Equal(amount):
				r.transfers.lost++
				r.problem("lost", "transfer %s was answered as id %s, %s from %s to %s, but is stored as %s, %s from %s to %s",
					rec.key, idList(rec.ids), rec.amount, accounts[rec.from], accounts[rec.to], row.id, row.amount, row.from, row.to)
			}
			if len(rec.ids) > 1 {
				r.transfers.duplicated++
				r.problem("duplicate", "transfer %s was answered with several ids: %s", rec.key, idList(rec.ids))
			}
		case outcomeRefused:
			r.transfers.refused++
			if isStored {
				r.transfers.duplicated++
				r.problem("duplicate", "transfer %s was refused (status %d), which writes nothing, but is stored as %s", rec.key, rec.status, row.id)
			}
		default:
			r.transfers.unresolved++
			if isStored {
				r.transfers.unresolvedStored++
			}
		}
		// What the client believes moved: its own figures when it was told so,
		// the stored row for an unresolved request that did move.
		switch {
		case rec.outcome == outcomeOK:
			expected[accounts[rec.from]] = expected[accounts[rec.from]].Sub(amount)
			expected[accounts[rec.to]] = expected[accounts[rec.to]].Add(amount)
		case rec.outcome != outcomeRefused && isStored:
			expected[row.from] = expected[row.from].Sub(row.amount)
			expected[row.to] = expected[row.to].Add(row.amount)
		}
		if !isStored {
			continue
		}
		e := s.entries[row.id]
		if e.count != 2 || !e.sum.IsZero() {
			r.problem("ledger", "transfer %s (%s) has %d entries summing to %s, want 2 summing to 0", rec.key, row.id, e.count, e.sum)
		}
	}
	for key, row := range s.transfers {
		if !ours[key] {
			r.transfers.duplicated++
			r.problem("duplicate", "transfers holds key %q (%s), which the client never sent", key, row.id)
		}
	}
	// Money is conserved as the client saw it: each account's balance is the
	// sum of the transfers it was told moved (plus unresolved ones that did).
	for i, acct := range accounts {
		got, ok := s.balances[acct]
		if !ok {
			r.problem("ledger", "account %d (%s) has no balance row", i, acct)
			continue
		}
		if want := expected[acct]; !got.Equal(want) {
			r.problem("ledger", "account %d (%s) holds %s; the client's transfers say %s", i, acct, got.StringFixed(4), want.StringFixed(4))
		}
	}
}

func idList(ids map[string]bool) string {
	list := make([]string, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	slices.Sort(list)
	if len(list) == 0 {
		return "(none)"
	}
	return strings.Join(list, ",")
}

// runReconcile runs `daybook reconcile` against the scenario's database and
// returns its exit code and first line (exit 0 clean, 1 mismatch).
func runReconcile(ctx context.Context, binary string, env []string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, reconcileTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "reconcile")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	text := strings.TrimSpace(string(out))
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, firstLine(text), nil
	case errors.As(err, &exit):
		return exit.ExitCode(), text, nil
	default:
		return -1, text, fmt.Errorf("daybook reconcile: %w", err)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
