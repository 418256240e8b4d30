package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/migrations"
)

const (
	// EnvURL names the variable that overrides DefaultURL.
	EnvURL = "DAYBOOK_TEST_DATABASE_URL"
	// DefaultURL is the database that holds the test schemas when EnvURL is unset.
	DefaultURL = "postgres://postgres@localhost:5432/daybook_test?sslmode=disable"

	// poolMaxConns keeps parallel tests, across all packages that go test runs
	// at once, under the server's max_connections (100 by default).
	poolMaxConns = 10
	// cleanupTimeout bounds dropping a schema after the test's context is done.
	cleanupTimeout = 30 * time.Second
)

// BaseURL returns the database that holds the test schemas: $DAYBOOK_TEST_DATABASE_URL,
// or DefaultURL when that is unset or empty.
func BaseURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return DefaultURL
}

// New returns a pool on a fresh schema with every migration applied. The pool
// is closed and the schema dropped when t ends. It holds at most 10
// connections unless the base URL sets pool_max_conns.
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, _ := newSchema(t, true)
	return pool
}

// NewWithURL is New that also returns a connection URL for the same schema, for
// code under test that opens its own connections. The URL selects the schema
// with options=-csearch_path=..., which pgx.Connect, pgxpool.New and psql all
// honour. It adds no pool_max_conns, because pgx.Connect would send that to
// the server, which refuses it.
func NewWithURL(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	return newSchema(t, true)
}

// NewEmpty is NewWithURL without migrations: the schema has no tables at all.
func NewEmpty(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	return newSchema(t, false)
}

// ensured remembers, per base URL, the outcome of creating its database, so
// that the hundreds of tests of one process try it once; a failure is
// remembered too and fails every test that needs that database.
var ensured sync.Map // string -> func() error

func ensureDatabase(baseURL string) error {
	once, _ := ensured.LoadOrStore(baseURL, sync.OnceValue(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		return migrations.EnsureDatabase(ctx, baseURL)
	}))
	return once.(func() error)()
}

func newSchema(t testing.TB, migrate bool) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := t.Context()
	base := BaseURL()
	require.NoError(t, ensureDatabase(base), "ensure test database")

	schema := "test_" + randomHex()
	schemaURL, err := withSearchPath(base, schema)
	require.NoError(t, err, "build url for schema %s", schema)

	admin := connect(ctx, t, base)
	_, err = admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
	require.NoError(t, err, "create schema %s", schema)
	require.NoError(t, admin.Close(ctx))
	// Registered before the pool's Close so that it runs after it: cleanups
	// run last in, first out.
	t.Cleanup(func() { dropSchema(t, base, schema) })

	config, err := pgxpool.ParseConfig(schemaURL)
	require.NoError(t, err, "parse url for schema %s", schema)
	if !hasQueryParam(schemaURL, "pool_max_conns") {
		config.MaxConns = poolMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, config)
	require.NoError(t, err, "open pool on schema %s", schema)
	t.Cleanup(pool.Close)

	if migrate {
		migrator, err := migrations.New(pool, migrations.Files())
		require.NoError(t, err)
		_, err = migrator.Up(ctx)
		require.NoError(t, err, "migrate schema %s", schema)
	}
	return pool, schemaURL
}

// withSearchPath returns baseURL with the schema set through the options
// parameter (-csearch_path=...). That form is read by pgx, pgxpool, libpq and
// psql alike; a bare search_path parameter works in pgx but psql rejects it.
// Pool settings are left out of the URL because pgx.Connect would send them to
// the server, which refuses unknown parameters.
func withSearchPath(baseURL, schema string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", err
	}
	query := u.Query()
	query.Del("search_path")
	options := query.Get("options")
	if options != "" {
		options += " "
	}
	query.Set("options", options+"-csearch_path="+schema)
	// libpq does not decode '+' as a space in query values; %20 works everywhere.
	u.RawQuery = strings.ReplaceAll(query.Encode(), "+", "%20")
	return u.String(), nil
}

func hasQueryParam(rawURL, name string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && u.Query().Has(name)
}

func connect(ctx context.Context, t testing.TB, rawURL string) *pgx.Conn {
	t.Helper()
	// pgxpool's parser drops any pool_* settings that the server would refuse.
	config, err := pgxpool.ParseConfig(rawURL)
	require.NoError(t, err, "parse test database url")
	conn, err := pgx.ConnectConfig(ctx, config.ConnConfig)
	require.NoError(t, err, "connect to test database")
	return conn
}

func dropSchema(t testing.TB, baseURL, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	config, err := pgxpool.ParseConfig(baseURL)
	if err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
		return
	}
	conn, err := pgx.ConnectConfig(ctx, config.ConnConfig)
	if err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
	}
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails: crypto/rand crashes the program instead
	return hex.EncodeToString(b)
}
