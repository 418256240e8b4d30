package testdb_test

import (
	"context"
	"io/fs"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/migrations"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func currentSchema(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var schema string
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT current_schema()`).Scan(&schema))
	return schema
}

func schemaExists(t *testing.T, name string) bool {
	t.Helper()
	config, err := pgxpool.ParseConfig(testdb.BaseURL())
	require.NoError(t, err)
	conn, err := pgx.ConnectConfig(t.Context(), config.ConnConfig)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var exists bool
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, name).Scan(&exists))
	return exists
}

func TestNew_GivesMigratedSchemaOfItsOwn(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)

	require.Regexp(t, `^test_[0-9a-f]{16}$`, currentSchema(t, pool))

	ups, err := fs.Glob(migrations.Files(), "*.up.sql")
	require.NoError(t, err)
	var applied int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&applied))
	require.Equal(t, len(ups), applied)
	require.EqualValues(t, 10, pool.Config().MaxConns)
}

func TestNew_SchemasAreIsolated(t *testing.T) {
	t.Parallel()
	a, _ := testdb.NewEmpty(t)
	b, _ := testdb.NewEmpty(t)
	require.NotEqual(t, currentSchema(t, a), currentSchema(t, b))

	_, err := a.Exec(t.Context(), `CREATE TABLE only_in_a (id int)`)
	require.NoError(t, err)

	var inB bool
	require.NoError(t, b.QueryRow(t.Context(), `SELECT to_regclass('only_in_a') IS NOT NULL`).Scan(&inB))
	require.False(t, inB)
}

func TestNewEmpty_HasNoTables(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewEmpty(t)

	var tables int
	require.NoError(t, pool.QueryRow(t.Context(),
		`SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace`).Scan(&tables))
	require.Zero(t, tables)
}

func TestNewWithURL_URLReachesTheSameSchema(t *testing.T) {
	t.Parallel()
	pool, schemaURL := testdb.NewWithURL(t)
	want := currentSchema(t, pool)
	require.NotContains(t, schemaURL, "pool_max_conns", "pgx.Connect would send it to the server")

	other, err := pgxpool.New(t.Context(), schemaURL)
	require.NoError(t, err)
	defer other.Close()
	require.Equal(t, want, currentSchema(t, other))

	conn, err := pgx.Connect(t.Context(), schemaURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var got string
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT current_schema()`).Scan(&got))
	require.Equal(t, want, got)

	// The URL sees the migrated tables without qualifying them.
	var applied int
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&applied))
	require.Positive(t, applied)
}

func TestNew_CleanupDropsTheSchema(t *testing.T) {
	t.Parallel()
	var schema string
	// Not parallel inside, so its cleanups have run when t.Run returns.
	t.Run("uses a schema", func(t *testing.T) {
		pool := testdb.New(t)
		schema = currentSchema(t, pool)
		require.True(t, schemaExists(t, schema))
	})
	require.True(t, strings.HasPrefix(schema, "test_"))
	require.False(t, schemaExists(t, schema))
}

// Not parallel: t.Setenv changes the whole process's environment.
func TestBaseURL_ReadsEnvironment(t *testing.T) {
	t.Setenv(testdb.EnvURL, "postgres://someone@db.example:5433/other?sslmode=disable")
	require.Equal(t, "postgres://someone@db.example:5433/other?sslmode=disable", testdb.BaseURL())

	t.Setenv(testdb.EnvURL, "")
	require.Equal(t, "postgres://postgres@localhost:5432/daybook_test?sslmode=disable", testdb.BaseURL())
}

// Not parallel: t.Setenv changes the whole process's environment.
func TestNew_KeepsOptionsAndPoolSizeOfBaseURL(t *testing.T) {
	base, err := url.Parse(testdb.BaseURL())
	require.NoError(t, err)
	query := base.Query()
	query.Set("options", "-c statement_timeout=4321")
	query.Set("search_path", "public")
	query.Set("pool_max_conns", "3")
	// pgx, like libpq, does not read '+' in a query value as a space.
	base.RawQuery = strings.ReplaceAll(query.Encode(), "+", "%20")
	t.Setenv(testdb.EnvURL, base.String())

	pool, schemaURL := testdb.NewWithURL(t)

	require.Regexp(t, `^test_[0-9a-f]{16}$`, currentSchema(t, pool))
	require.EqualValues(t, 3, pool.Config().MaxConns)
	require.Contains(t, schemaURL, "pool_max_conns=3")
	var timeout string
	require.NoError(t, pool.QueryRow(t.Context(), `SHOW statement_timeout`).Scan(&timeout))
	require.Equal(t, "4321ms", timeout)
}
