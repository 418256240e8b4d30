// Package ingest owns ingested events: their shape, their idempotency key,
// the state machine PENDING -> PROCESSING -> COMPLETED | FAILED, the table
// ingestion_events, and the processing of one event.
//
// It imports storage (pgx, eventstore, projections, archive) but no HTTP and
// no Watermill: the api and handlers packages are its edges.
package ingest
