// Package reconcile checks the ledger against itself, trusting none of its
// stores: per account, the sum of its ledger_entries, its account_balances
// row and the fold of its event stream (account-<id>) must agree; globally,
// all entries sum to zero, each transfer has exactly its two opposite
// entries, no account without allow_negative is below zero, and every
// transfer has its ledger.transfer_completed event.
//
// It reads the tables of ledger and eventstore with plain SQL on purpose:
// going through ledger's own reads would check the code against itself. It
// writes nothing, and it imports logevent only for event type and stream names.
// All checks read one snapshot (a REPEATABLE READ, read-only transaction), so
// transfers committed meanwhile cannot show up as false mismatches.
package reconcile
