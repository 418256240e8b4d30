package main

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
)

// The checks must be able to fail: each test below hands tally what the
// client saw and what Postgres holds, with one thing wrong, and expects
// exactly that to be reported.

var testAccounts = []string{"world", "acct-a", "acct-b"}

func acceptedEvent(key, id string) *eventRecord {
	return &eventRecord{key: key, outcome: outcomeOK, ids: map[string]bool{id: true}, admitted: 1}
}

func completed(id string) storedEvent {
	return storedEvent{id: id, status: "COMPLETED", logRows: 1}
}

// consistent is a scenario where everything holds: two accepted events (one
// poison, dead-lettered), one 503'd event never stored, a funding transfer,
// one moved transfer and one refused.
func consistent() ([]*eventRecord, []*transferRecord, stored) {
	poison := acceptedEvent("e2", "id-2")
	poison.poison = true
	events := []*eventRecord{
		acceptedEvent("e1", "id-1"), poison,
		{key: "e3", outcome: outcomeUnavailable, ids: map[string]bool{}, status: 503},
	}
	transfers := []*transferRecord{
		{key: "fund", from: 0, to: 1, amount: "100.00", outcome: outcomeOK, ids: map[string]bool{"t-0": true}},
		{key: "t1", from: 1, to: 2, amount: "12.34", outcome: outcomeOK, ids: map[string]bool{"t-1": true}},
		{key: "t2", from: 2, to: 1, amount: "99.00", outcome: outcomeRefused, ids: map[string]bool{}, status: 422},
	}
	s := stored{
		events: map[string]storedEvent{
			"e1": completed("id-1"),
			"e2": {id: "id-2", status: "FAILED", deadLetters: 1},
		},
		transfers: map[string]storedTransfer{
			"fund": {id: "t-0", from: "world", to: "acct-a", amount: decimal.RequireFromString("100")},
			"t1":   {id: "t-1", from: "acct-a", to: "acct-b", amount: decimal.RequireFromString("12.34")},
		},
		entries: map[string]entrySum{"t-0": {count: 2}, "t-1": {count: 2}},
		balances: map[string]decimal.Decimal{
			"world": decimal.RequireFromString("-100"), "acct-a": decimal.RequireFromString("87.66"), "acct-b": decimal.RequireFromString("12.34"),
		},
	}
	return events, transfers, s
}

// tallyAfter tallies the consistent scenario after spoil has changed it.
func tallyAfter(spoil func(events []*eventRecord, s *stored)) result {
	events, transfers, s := consistent()
	spoil(events, &s)
	var r result
	tally(&r, events, transfers, testAccounts, s)
	return r
}

func TestTally_ConsistentRunPasses(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func([]*eventRecord, *stored) {})
	require.Empty(t, r.problems)
	require.Equal(t, 3, r.events.sent)
	require.Equal(t, 2, r.events.accepted)
	require.Equal(t, 1, r.events.completed)
	require.Equal(t, 1, r.events.deadLettered)
	require.Zero(t, r.events.validDeadLettered)
	require.Equal(t, 2, r.transfers.ok)
	require.Equal(t, 1, r.transfers.refused)
}

func TestTally_AcceptedEventWithoutRowIsLost(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func(_ []*eventRecord, s *stored) {
		delete(s.events, "e1")
	})
	require.Equal(t, 1, r.events.lost)
	require.Len(t, r.problems["lost"], 1)
	require.Contains(t, r.problems["lost"][0], "e1")
}

func TestTally_AcceptedEventParkedInTheStreamIsStuck(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func(_ []*eventRecord, s *stored) {
		delete(s.events, "e1")
		s.parked = map[string]parked{"e1": {entryID: "1-0", consumer: "host-3", idle: time.Minute, deliveries: 1}}
	})
	require.Zero(t, r.events.lost)
	require.Equal(t, 1, r.events.stuck)
	require.Contains(t, r.problems["stuck"][0], "host-3")
}

func TestTally_CompletedEventWithoutItsLogRowIsLost(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func(_ []*eventRecord, s *stored) {
		s.events["e1"] = storedEvent{id: "id-1", status: "COMPLETED"}
	})
	require.Equal(t, 1, r.events.lost)
}

func TestTally_EventProcessedTwiceOrAdmittedTwiceIsDuplicated(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func(events []*eventRecord, s *stored) {
		e := s.events["e1"]
		e.logRows = 2
		s.events["e1"] = e
		events[1].ids["id-2b"] = true // a second 202 for the poison event's key
		events[1].admitted = 2
	})
	require.Equal(t, 2, r.events.duplicated)
	require.Len(t, r.problems["duplicate"], 2)
}

// Without Redis the API has no fast duplicate check: a repeat sent before the
// first copy was stored is admitted again under a new id, and stored once.
// That is the fail-open contract, not a duplicate; storing it twice would be.
func TestTally_AdmittedTwiceWhileFailingOpenIsStoredOnce(t *testing.T) {
	t.Parallel()
	readmit := func(events []*eventRecord, _ *stored) {
		events[0].ids["id-1b"] = true
		events[0].admitted = 2
	}
	events, transfers, s := consistent()
	readmit(events, &s)
	r := result{failOpen: true}
	tally(&r, events, transfers, testAccounts, s)
	require.Empty(t, r.problems)
	require.Equal(t, 1, r.events.readmitted)
	require.Zero(t, r.events.duplicated)

	strict := tallyAfter(readmit)
	require.Equal(t, 1, strict.events.duplicated, "with the fast check in place it is a duplicate")

	events, transfers, s = consistent()
	readmit(events, &s)
	e := s.events["e1"]
	e.logRows = 2
	s.events["e1"] = e
	processedTwice := result{failOpen: true}
	tally(&processedTwice, events, transfers, testAccounts, s)
	require.Equal(t, 1, processedTwice.events.duplicated, "processed twice is a duplicate even failing open")
}

func TestTally_RowForAKeyNeverSentIsDuplicated(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func(_ []*eventRecord, s *stored) {
		s.events["stranger"] = completed("id-x")
	})
	require.Equal(t, 1, r.events.duplicated)
}

func TestTally_ProcessingOrUndeadFailedEventIsStuck(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func(_ []*eventRecord, s *stored) {
		s.events["e1"] = storedEvent{id: "id-1", status: "PROCESSING"}
		s.events["e2"] = storedEvent{id: "id-2", status: "FAILED"} // no dead letter
	})
	require.Equal(t, 2, r.events.stuck)
	require.Len(t, r.problems["stuck"], 2)
}

func TestTally_StoredUnacceptedEventIsNotAProblem(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func(_ []*eventRecord, s *stored) {
		s.events["e3"] = completed("id-3") // the gate took it, then the answer was a 503
	})
	require.Empty(t, r.problems)
	require.Equal(t, 1, r.events.storedUnconfirmed)
}

func TestTally_MovedTransferWithoutRowIsLost(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func(_ []*eventRecord, s *stored) {
		delete(s.transfers, "t1")
		s.balances["acct-a"] = decimal.RequireFromString("100")
		s.balances["acct-b"] = decimal.Zero
	})
	require.Equal(t, 1, r.transfers.lost)
	require.Len(t, r.problems["lost"], 1)
	require.Len(t, r.problems["ledger"], 2, "the balances disagree with the client's view too")
}

func TestTally_TransferStoredWithOtherAmountIsLost(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func(_ []*eventRecord, s *stored) {
		tr := s.transfers["t1"]
		tr.amount = decimal.RequireFromString("12.35")
		s.transfers["t1"] = tr
	})
	require.Equal(t, 1, r.transfers.lost)
}

func TestTally_RefusedTransferThatWasStoredIsDuplicated(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func(_ []*eventRecord, s *stored) {
		s.transfers["t2"] = storedTransfer{id: "t-2", from: "acct-b", to: "acct-a", amount: decimal.RequireFromString("99")}
		s.entries["t-2"] = entrySum{count: 2}
	})
	require.Equal(t, 1, r.transfers.duplicated)
}

func TestTally_BalanceThatDisagreesWithTheTransfersFails(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func(_ []*eventRecord, s *stored) {
		s.balances["acct-b"] = decimal.RequireFromString("24.68")
	})
	require.Len(t, r.problems["ledger"], 1)
	require.Contains(t, r.problems["ledger"][0], "24.6800")
}

func TestTally_TransferWithOneEntryFails(t *testing.T) {
	t.Parallel()
	r := tallyAfter(func(_ []*eventRecord, s *stored) {
		s.entries["t-1"] = entrySum{count: 1, sum: decimal.RequireFromString("12.34")}
	})
	require.Len(t, r.problems["ledger"], 1)
}
