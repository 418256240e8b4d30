// Package api is the HTTP edge: huma operations (OpenAPI 3.1), RFC 9457
// problems, authentication, body limits and the mapping of domain errors to
// status codes, in one place. It calls ingest, gate, replay, deadletter and ledger;
// nothing imports it but cmd/daybook.
package api
