// Package testdb gives each test its own Postgres schema, migrated or empty,
// and drops it when the test ends. It is for tests only: nothing outside
// _test.go files may import it.
//
// Every schema lives in one database (BaseURL), so tests run in parallel
// without seeing each other's rows and without creating a database each.
// Code under test must use unqualified table names, which the search_path
// resolves to the test's schema.
//
// It imports migrations and pgx.
package testdb
