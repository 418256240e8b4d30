// Package migrations owns Daybook's database schema: the numbered SQL files in
// this directory (embedded into the binary), the schema_migrations table that
// records which of them are applied, and creating the database itself when it
// is missing.
//
// Files are named NNNN_name.up.sql and NNNN_name.down.sql, numbered from 0001
// without gaps. Each up or down file runs in one transaction together with its
// schema_migrations row, so a file must not contain BEGIN/COMMIT or statements
// that cannot run in a transaction (CREATE INDEX CONCURRENTLY). Files use
// unqualified names: they are applied to whatever schema comes first on the
// connection's search_path, which is how tests get one schema each.
//
// Up, Down and Status serialize on a Postgres advisory lock derived from the
// current schema, so any number of processes may start at once and each
// migration is still applied exactly once.
//
// The package imports only pgx; nothing in Daybook's domain.
package migrations
