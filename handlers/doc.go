// Package handlers is the worker: the Watermill router that consumes
// daybook.events, its middleware chain, the dead-letter publisher, the outbox
// relay, the asynchronous projections, the stuck-event rescuer, the scheduled
// reconciliation and the gauges it keeps up to date. It is an
// edge: it calls ingest, replay and eventstore, and nothing imports it but
// cmd/daybook.
package handlers
