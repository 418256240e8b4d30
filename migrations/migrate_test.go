package migrations_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/migrations"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lockKeySQL is the advisory lock every migrator of the current schema takes.
// It is part of the contract: other tools may take the same lock to keep
// migrations out while they work.
const lockKeySQL = `SELECT pg_advisory_lock(hashtext('daybook.migrations.' || current_schema())::bigint)`

// threeTables is a controlled set whose effects the tests can observe.
func threeTables() fstest.MapFS {
	return fstest.MapFS{
		"0001_first.up.sql":    {Data: []byte("CREATE TABLE first (id int);")},
		"0001_first.down.sql":  {Data: []byte("DROP TABLE first;")},
		"0002_second.up.sql":   {Data: []byte("CREATE TABLE second (id int);")},
		"0002_second.down.sql": {Data: []byte("DROP TABLE second;")},
		"0003_third.up.sql":    {Data: []byte("CREATE TABLE third (id int);")},
		"0003_third.down.sql":  {Data: []byte("DROP TABLE third;")},
	}
}

func newMigrator(t *testing.T, pool *pgxpool.Pool, files fs.FS) *migrations.Migrator {
	t.Helper()
	m, err := migrations.New(pool, files)
	require.NoError(t, err)
	return m
}

// embeddedMigrations lists the real migrations from their file names, worked
// out independently of the package's parser.
func embeddedMigrations(t *testing.T) []migrations.Migration {
	t.Helper()
	names, err := fs.Glob(migrations.Files(), "*.up.sql")
	require.NoError(t, err)
	require.NotEmpty(t, names, "no embedded migrations")
	slices.Sort(names)
	var want []migrations.Migration
	for _, name := range names {
		version, err := strconv.Atoi(name[:4])
		require.NoError(t, err)
		want = append(want, migrations.Migration{Version: version, Name: strings.TrimSuffix(name[5:], ".up.sql")})
	}
	return want
}

func reversed(ms []migrations.Migration) []migrations.Migration {
	out := slices.Clone(ms)
	slices.Reverse(out)
	return out
}

func tableExists(t *testing.T, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var exists bool
	// to_regclass resolves the unqualified name through the search_path.
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists))
	return exists
}

func recordedVersions(t *testing.T, pool *pgxpool.Pool) []migrations.Migration {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT version, name FROM schema_migrations ORDER BY version`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[migrations.Migration])
	require.NoError(t, err)
	return got
}

func appliedFlags(t *testing.T, m *migrations.Migrator) []bool {
	t.Helper()
	statuses, err := m.Status(t.Context())
	require.NoError(t, err)
	flags := make([]bool, 0, len(statuses))
	for _, s := range statuses {
		flags = append(flags, s.Applied)
	}
	return flags
}

func TestUp_AppliesEveryEmbeddedMigrationOnce(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewEmpty(t)
	m := newMigrator(t, pool, migrations.Files())
	want := embeddedMigrations(t)

	applied, err := m.Up(t.Context())
	require.NoError(t, err)
	require.Equal(t, want, applied)
	require.Equal(t, want, recordedVersions(t, pool))

	again, err := m.Up(t.Context())
	require.NoError(t, err)
	require.Empty(t, again)
	require.Equal(t, want, recordedVersions(t, pool))
}

func TestEmbedded_DownAllLeavesEmptySchemaAndUpRestoresIt(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewEmpty(t)
	m := newMigrator(t, pool, migrations.Files())
	want := embeddedMigrations(t)
	newest := want[len(want)-1]
	ctx := t.Context()

	_, err := m.Up(ctx)
	require.NoError(t, err)

	reverted, err := m.Down(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, []migrations.Migration{newest}, reverted)
	applied, err := m.Up(ctx)
	require.NoError(t, err)
	require.Equal(t, []migrations.Migration{newest}, applied)

	reverted, err = m.Down(ctx, len(want))
	require.NoError(t, err)
	require.Equal(t, reversed(want), reverted)

	// Every down file together must undo every up file: nothing but the
	// bookkeeping table may be left in the schema.
	var leftovers []string
	rows, err := pool.Query(ctx, `
		SELECT kind || ' ' || name FROM (
		    SELECT 'relation' AS kind, relname::text AS name FROM pg_class
		    WHERE relnamespace = current_schema()::regnamespace
		      AND relname NOT IN ('schema_migrations', 'schema_migrations_pkey')
		    UNION ALL
		    SELECT 'function', proname::text FROM pg_proc WHERE pronamespace = current_schema()::regnamespace
		    UNION ALL
		    SELECT 'type', typname::text FROM pg_type
		    WHERE typnamespace = current_schema()::regnamespace AND typrelid = 0 AND typelem = 0
		) AS objects ORDER BY 1`)
	require.NoError(t, err)
	leftovers, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, leftovers, "down files left objects behind")
	require.Empty(t, recordedVersions(t, pool))

	applied, err = m.Up(ctx)
	require.NoError(t, err)
	require.Equal(t, want, applied)
}

func TestUp_ConcurrentCallersApplyEachMigrationOnce(t *testing.T) {
	t.Parallel()
	counting := fstest.MapFS{
		// The sleep holds the lock long enough for every caller to queue on it.
		"0001_log.up.sql":    {Data: []byte("CREATE TABLE applications (version int NOT NULL); INSERT INTO applications VALUES (1); SELECT pg_sleep(0.05);")},
		"0002_second.up.sql": {Data: []byte("INSERT INTO applications VALUES (2);")},
		"0003_third.up.sql":  {Data: []byte("INSERT INTO applications VALUES (3);")},
	}
	tests := []struct {
		name  string
		files fs.FS
	}{
		{name: "counting", files: counting},
		{name: "embedded", files: migrations.Files()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool, schemaURL := testdb.NewEmpty(t)
			all, err := newMigrator(t, pool, tt.files).Status(t.Context())
			require.NoError(t, err)
			var want []migrations.Migration
			for _, s := range all {
				want = append(want, s.Migration)
			}

			// Each caller has its own pool, as separate processes would.
			const callers = 8
			applied := make([][]migrations.Migration, callers)
			errs := make([]error, callers)
			var wg sync.WaitGroup
			for i := range callers {
				wg.Go(func() {
					callerPool, err := pgxpool.New(t.Context(), schemaURL)
					if err != nil {
						errs[i] = err
						return
					}
					defer callerPool.Close()
					m, err := migrations.New(callerPool, tt.files)
					if err != nil {
						errs[i] = err
						return
					}
					applied[i], errs[i] = m.Up(t.Context())
				})
			}
			wg.Wait()

			var got []migrations.Migration
			for i := range callers {
				require.NoError(t, errs[i], "caller %d", i)
				got = append(got, applied[i]...)
			}
			slices.SortFunc(got, func(a, b migrations.Migration) int { return a.Version - b.Version })
			require.Equal(t, want, got)
			require.Equal(t, want, recordedVersions(t, pool))

			if tt.name == "counting" {
				rows, err := pool.Query(t.Context(), `SELECT version FROM applications ORDER BY version`)
				require.NoError(t, err)
				versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
				require.NoError(t, err)
				require.Equal(t, []int32{1, 2, 3}, versions)
			}
		})
	}
}

func TestUp_WaitsForLockOnSameSchemaOnly(t *testing.T) {
	t.Parallel()
	lockedPool, _ := testdb.NewEmpty(t)
	otherPool, _ := testdb.NewEmpty(t)

	holder, err := lockedPool.Acquire(t.Context())
	require.NoError(t, err)
	// Release is idempotent; deferred so a failing assertion cannot leave the
	// pool's Close in cleanup waiting for this connection forever.
	defer holder.Release()
	_, err = holder.Exec(t.Context(), lockKeySQL)
	require.NoError(t, err)

	applied, err := newMigrator(t, otherPool, threeTables()).Up(t.Context())
	require.NoError(t, err, "a lock on another schema must not block")
	require.Len(t, applied, 3)

	locked := newMigrator(t, lockedPool, threeTables())
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	applied, err = locked.Up(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Empty(t, applied)

	_, err = holder.Exec(t.Context(), `SELECT pg_advisory_unlock_all()`)
	require.NoError(t, err)
	holder.Release()

	// The cancelled attempt must not have left the lock held on a pooled connection.
	applied, err = locked.Up(t.Context())
	require.NoError(t, err)
	require.Len(t, applied, 3)
}

func TestDown_RevertsNewestAndUpReappliesIt(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewEmpty(t)
	m := newMigrator(t, pool, threeTables())
	ctx := t.Context()
	_, err := m.Up(ctx)
	require.NoError(t, err)

	reverted, err := m.Down(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, []migrations.Migration{{Version: 3, Name: "third"}}, reverted)
	require.False(t, tableExists(t, pool, "third"))
	require.True(t, tableExists(t, pool, "second"))
	require.Equal(t, []bool{true, true, false}, appliedFlags(t, m))

	applied, err := m.Up(ctx)
	require.NoError(t, err)
	require.Equal(t, []migrations.Migration{{Version: 3, Name: "third"}}, applied)
	require.True(t, tableExists(t, pool, "third"))

	reverted, err = m.Down(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, reverted)

	// More steps than applied migrations reverts them all.
	reverted, err = m.Down(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, []migrations.Migration{{3, "third"}, {2, "second"}, {1, "first"}}, reverted)
	require.False(t, tableExists(t, pool, "first"))
	require.Equal(t, []bool{false, false, false}, appliedFlags(t, m))

	_, err = m.Down(ctx, -1)
	require.ErrorContains(t, err, "steps must not be negative")
}

func TestDown_MissingDownFileRevertsNothing(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewEmpty(t)
	files := threeTables()
	delete(files, "0003_third.down.sql")
	m := newMigrator(t, pool, files)
	_, err := m.Up(t.Context())
	require.NoError(t, err)

	reverted, err := m.Down(t.Context(), 2)
	require.EqualError(t, err, "revert migration 3 (third): it has no down file")
	require.Empty(t, reverted)
	require.Equal(t, []bool{true, true, true}, appliedFlags(t, m))
	require.True(t, tableExists(t, pool, "third"))
}

func TestDown_RefusesMigrationUnknownToThisBinary(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewEmpty(t)
	_, err := newMigrator(t, pool, threeTables()).Up(t.Context())
	require.NoError(t, err)

	older := threeTables()
	delete(older, "0003_third.up.sql")
	delete(older, "0003_third.down.sql")
	m := newMigrator(t, pool, older)

	applied, err := m.Up(t.Context())
	require.NoError(t, err, "an older binary starting against a newer schema")
	require.Empty(t, applied)

	reverted, err := m.Down(t.Context(), 1)
	require.EqualError(t, err, "revert migration 3: it is applied but unknown to this binary")
	require.Empty(t, reverted)
	require.True(t, tableExists(t, pool, "second"))
}

func TestStatus_ReportsAppliedMigrationsAndWhen(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewEmpty(t)
	m := newMigrator(t, pool, threeTables())
	ctx := t.Context()

	statuses, err := m.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, []migrations.MigrationStatus{
		{Migration: migrations.Migration{Version: 1, Name: "first"}},
		{Migration: migrations.Migration{Version: 2, Name: "second"}},
		{Migration: migrations.Migration{Version: 3, Name: "third"}},
	}, statuses)

	var before, after time.Time
	require.NoError(t, pool.QueryRow(ctx, `SELECT now()`).Scan(&before))
	_, err = m.Up(ctx)
	require.NoError(t, err)
	require.NoError(t, pool.QueryRow(ctx, `SELECT now()`).Scan(&after))
	_, err = m.Down(ctx, 1)
	require.NoError(t, err)

	statuses, err = m.Status(ctx)
	require.NoError(t, err)
	require.Len(t, statuses, 3)
	for _, s := range statuses[:2] {
		require.True(t, s.Applied, "version %d", s.Version)
		require.False(t, s.AppliedAt.Before(before), "version %d applied at %v, before %v", s.Version, s.AppliedAt, before)
		require.False(t, s.AppliedAt.After(after), "version %d applied at %v, after %v", s.Version, s.AppliedAt, after)
	}
	require.Equal(t, migrations.MigrationStatus{Migration: migrations.Migration{Version: 3, Name: "third"}}, statuses[2])
}

func TestUp_BrokenMigrationStopsThereAndKeepsEarlierOnes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		broken   string
		sqlState string
	}{
		{name: "syntax error", broken: "CREATE TABLE half_done (id int); SELEC 1;", sqlState: "42601"},
		{name: "error while running", broken: "CREATE TABLE half_done (id int); INSERT INTO no_such_table VALUES (1);", sqlState: "42P01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool, _ := testdb.NewEmpty(t)
			files := threeTables()
			delete(files, "0002_second.up.sql")
			delete(files, "0002_second.down.sql")
			files["0002_broken.up.sql"] = &fstest.MapFile{Data: []byte(tt.broken)}
			m := newMigrator(t, pool, files)

			applied, err := m.Up(t.Context())
			require.ErrorContains(t, err, "apply migration 2 (broken): ")
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr)
			require.Equal(t, tt.sqlState, pgErr.Code)
			require.Equal(t, []migrations.Migration{{Version: 1, Name: "first"}}, applied)

			require.Equal(t, []bool{true, false, false}, appliedFlags(t, m))
			require.True(t, tableExists(t, pool, "first"))
			require.False(t, tableExists(t, pool, "half_done"), "the failed migration's transaction must roll back")
			require.False(t, tableExists(t, pool, "third"))
		})
	}
}

func TestNew_RejectsMalformedFileSets(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewEmpty(t)
	up := func(sql string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(sql)} }

	tests := []struct {
		name    string
		files   fstest.MapFS
		wantErr string
	}{
		{
			name:    "version without leading zeros",
			files:   fstest.MapFS{"1_init.up.sql": up("")},
			wantErr: "read migrations: file 1_init.up.sql: name must look like 0001_name.up.sql or 0001_name.down.sql",
		},
		{
			name:    "upper case name",
			files:   fstest.MapFS{"0001_Init.up.sql": up("")},
			wantErr: "read migrations: file 0001_Init.up.sql: name must look like 0001_name.up.sql or 0001_name.down.sql",
		},
		{
			name:    "no direction",
			files:   fstest.MapFS{"0001_init.sql": up("")},
			wantErr: "read migrations: file 0001_init.sql: name must look like 0001_name.up.sql or 0001_name.down.sql",
		},
		{
			name:    "dash separator",
			files:   fstest.MapFS{"0001-init.up.sql": up("")},
			wantErr: "read migrations: file 0001-init.up.sql: name must look like 0001_name.up.sql or 0001_name.down.sql",
		},
		{
			name:    "version zero",
			files:   fstest.MapFS{"0000_init.up.sql": up("")},
			wantErr: "read migrations: file 0000_init.up.sql: versions start at 0001",
		},
		{
			name:    "gap",
			files:   fstest.MapFS{"0001_a.up.sql": up(""), "0003_c.up.sql": up("")},
			wantErr: "read migrations: version 2 is missing: versions must run from 0001 without gaps",
		},
		{
			name:    "not starting at one",
			files:   fstest.MapFS{"0002_b.up.sql": up("")},
			wantErr: "read migrations: version 1 is missing: versions must run from 0001 without gaps",
		},
		{
			name:    "two names for one version",
			files:   fstest.MapFS{"0001_a.up.sql": up(""), "0001_b.up.sql": up("")},
			wantErr: "read migrations: version 1 is used twice: 0001_a.up.sql and 0001_b.up.sql",
		},
		{
			name:    "up and down named differently",
			files:   fstest.MapFS{"0001_a.up.sql": up(""), "0001_b.down.sql": up("")},
			wantErr: "read migrations: version 1 is used twice: 0001_a.up.sql and 0001_b.down.sql",
		},
		{
			name:    "down without up",
			files:   fstest.MapFS{"0001_a.up.sql": up(""), "0002_b.down.sql": up("")},
			wantErr: "read migrations: version 2 (b) has no up file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := migrations.New(pool, tt.files)
			require.EqualError(t, err, tt.wantErr)
			require.Nil(t, m)
		})
	}

	_, err := migrations.New(nil, threeTables())
	require.EqualError(t, err, "new migrator: pool is nil")
	_, err = migrations.New(pool, nil)
	require.EqualError(t, err, "new migrator: files is nil")
}

func TestNew_IgnoresWhatIsNotASQLFileAtTheTop(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.NewEmpty(t)
	files := fstest.MapFS{
		"0001_only.up.sql":         {Data: []byte("CREATE TABLE only_one (id int);")},
		"README.md":                {Data: []byte("notes")},
		"old/0002_archived.up.sql": {Data: []byte("SELEC broken")},
	}
	m := newMigrator(t, pool, files)

	applied, err := m.Up(t.Context())
	require.NoError(t, err)
	require.Equal(t, []migrations.Migration{{Version: 1, Name: "only"}}, applied)
}

func TestEmbeddedFiles_AreAllWellFormed(t *testing.T) {
	t.Parallel()
	entries, err := fs.ReadDir(migrations.Files(), ".")
	require.NoError(t, err)
	for _, e := range entries {
		require.Regexp(t, `^\d{4}_[a-z0-9_]+\.(up|down)\.sql$`, e.Name())
		// Every shipped migration can be rolled back.
		if down, ok := strings.CutSuffix(e.Name(), ".up.sql"); ok {
			_, err := fs.Stat(migrations.Files(), down+".down.sql")
			require.NoError(t, err, "%s has no down file", e.Name())
		}
	}
}

// databaseURL returns the test server's URL pointing at database name.
func databaseURL(t *testing.T, name string) string {
	t.Helper()
	u, err := url.Parse(testdb.BaseURL())
	require.NoError(t, err)
	u.Path = "/" + name
	query := u.Query()
	// EnsureDatabase must cope with pool settings in the URL.
	query.Set("pool_max_conns", "2")
	// pgx, like libpq, does not read '+' in a query value as a space.
	u.RawQuery = strings.ReplaceAll(query.Encode(), "+", "%20")
	return u.String()
}

func maintenanceConn(t *testing.T) *pgx.Conn {
	t.Helper()
	config, err := pgxpool.ParseConfig(testdb.BaseURL())
	require.NoError(t, err)
	config.ConnConfig.Database = "postgres"
	conn, err := pgx.ConnectConfig(t.Context(), config.ConnConfig)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// newDatabaseName returns a name no database has, and drops the database by
// that name when the test ends. Upper case and a space prove it is quoted.
func newDatabaseName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "daybook Ensure " + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		config, err := pgxpool.ParseConfig(testdb.BaseURL())
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		config.ConnConfig.Database = "postgres"
		conn, err := pgx.ConnectConfig(ctx, config.ConnConfig)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return name
}

func databaseExists(t *testing.T, conn *pgx.Conn, name string) bool {
	t.Helper()
	var exists bool
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists))
	return exists
}

func TestEnsureDatabase_CreatesMissingDatabaseAndIsIdempotent(t *testing.T) {
	t.Parallel()
	conn := maintenanceConn(t)
	name := newDatabaseName(t)
	dbURL := databaseURL(t, name)
	require.False(t, databaseExists(t, conn, name))

	require.NoError(t, migrations.EnsureDatabase(t.Context(), dbURL))
	require.True(t, databaseExists(t, conn, name))

	require.NoError(t, migrations.EnsureDatabase(t.Context(), dbURL))

	pool, err := pgxpool.New(t.Context(), dbURL)
	require.NoError(t, err)
	defer pool.Close()
	var current string
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT current_database()`).Scan(&current))
	require.Equal(t, name, current)
}

func TestEnsureDatabase_ConcurrentCallersAllSucceed(t *testing.T) {
	t.Parallel()
	conn := maintenanceConn(t)
	name := newDatabaseName(t)
	dbURL := databaseURL(t, name)

	const callers = 8
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { errs[i] = migrations.EnsureDatabase(t.Context(), dbURL) })
	}
	wg.Wait()

	require.NoError(t, errors.Join(errs...))
	require.True(t, databaseExists(t, conn, name))
}

func TestEnsureDatabase_RejectsUnparsableURL(t *testing.T) {
	t.Parallel()
	err := migrations.EnsureDatabase(t.Context(), "postgres://localhost:notaport/x")
	require.ErrorContains(t, err, "parse database url: ")
}
