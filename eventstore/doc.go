// Package eventstore owns the event log (table event_log) and the
// transactional outbox (table outbox).
//
// Appends happen inside the caller's transaction and write, in the same
// commit, the appended events to the outbox: one log message per append
// (a LogBatch; several when they pass 128 KiB). The outbox relay later
// publishes those messages to the queue. So an event is in the log if and
// only if it will be published. The package knows nothing of
// who reads the log: it imports pgx and watermill, never a domain package.
package eventstore
