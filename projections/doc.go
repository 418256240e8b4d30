// Package projections owns the read models built from the event log: the
// orders projection (table orders, applied in the ingest worker's
// transaction), the rebuild of orders and of the ledger's balance projection
// (account_balances) from the log, and the asynchronous per-account daily
// totals (account_daily_totals, fed by daybook.log). It reads event data by
// the contract in logevent, never by importing the writer's package.
package projections
