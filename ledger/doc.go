// Package ledger owns double-entry bookkeeping: accounts, transfers between
// them, the ledger entries a transfer writes, and the account_balances
// projection kept in the same transaction (tables accounts, account_balances,
// transfers, ledger_entries). Every change is also appended to the event log
// (streams account-<id> and transfer-<id>) through eventstore, whose outbox
// row commits with it.
//
// It imports storage (pgx, go-redis, eventstore) and shopspring/decimal for
// money, never a float; no HTTP and no Watermill: the api package is its edge
// and maps the sentinel errors below to status codes.
//
// # A transfer
//
// One Postgres transaction locks both account_balances rows with SELECT ...
// FOR UPDATE in ascending id order, so two transfers over the same accounts
// in opposite directions queue instead of deadlocking. On the locked rows it
// checks currency and the available balance, then writes the transfer, one
// debit and one credit entry (they sum to zero), the new balances and
// versions, and three events (ledger.transfer_completed on transfer-<id>,
// ledger.account_debited and ledger.account_credited on each account-<id> at
// the version the balance row had: the stream version and
// account_balances.version move together), and commits. Before committing
// it asserts, in Go, that the entries sum to zero and that each new balance
// is the old one plus its entry. Any error rolls everything back. Deadlocks
// (40P01) and serialization failures (40001) are retried with jittered
// backoff, Config.RetryMax times at most.
//
// The database holds the invariants too: an overdraft is refused by a CHECK
// on account_balances, a transaction whose entries do not sum to zero by a
// deferred constraint trigger at commit, and UPDATE, DELETE and TRUNCATE of
// transfers and ledger_entries by triggers.
//
// # Idempotency
//
// A transfer is keyed by its idempotency key and the SHA-256 of its canonical
// request (from, to, amount at 4 places, currency as given, metadata, and for
// a reversal the reversed transfer). The same key with the same request
// returns the original transfer (created = false), also when the twins run
// concurrently; the same key with another request is ErrIdempotencyConflict.
//
// Only a completed transfer consumes its key. A refused one (insufficient
// funds, unknown account, currency mismatch, invalid input) writes nothing,
// so the client can fix the cause and retry with the same key: a key names
// an intended movement of money, and the movement has not happened. The
// price is that the same key may be refused first and succeed later, once
// the account is funded.
//
// # Locks
//
// With Config.Lock = LockRedis, Transfer first takes a Redis lock per
// account (SET <prefix>lock:account:<id> <token> NX PX <ttl>, in id order),
// tries for at most Config.LockWait, and answers ErrLockBusy when it cannot
// have them; the locks are released with a compare-and-delete of the token.
// Within one process, callers waiting for the same account queue locally,
// first come first served, and only the head of the queue polls Redis.
// The row locks inside the transaction still run: they are the guarantee. A
// Redis lock can expire while its holder still works (a long pause, a slow
// retry), and a failover can lose it, after which two holders believe they
// own the account; only the database lock is tied to the transaction that
// writes. The Redis lock is an option that moves waiting for a busy account
// out of Postgres (no backend sits blocked on a row lock, no pool connection
// is held while waiting) at the price of refusing with ErrLockBusy instead of
// queueing.
//
// # Reversal
//
// Reverse writes a new transfer from the original's receiver back to its
// sender for the same amount, with reversal_of naming the original (UNIQUE:
// a transfer is reversed once). It is subject to the same balance check as
// any transfer: if the receiver has spent the money, the reversal is refused
// with ErrInsufficientFunds rather than overdrawing an account.
package ledger
