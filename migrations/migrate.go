package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed *.sql
var embedded embed.FS

// Files returns the migration files compiled into the binary.
func Files() fs.FS {
	return embedded
}

// Migration identifies one numbered schema change.
type Migration struct {
	Version int
	Name    string
}

// MigrationStatus says whether a migration is applied to the current schema.
type MigrationStatus struct {
	Migration
	Applied bool
	// AppliedAt is the zero time when Applied is false.
	AppliedAt time.Time
}

const (
	// maintenanceDatabase exists on every stock Postgres server and is where
	// CREATE DATABASE is issued from; template1 would not do, because CREATE
	// DATABASE refuses to copy a template that has other sessions connected.
	maintenanceDatabase = "postgres"

	sqlStateDuplicateDatabase = "42P04"
	sqlStateUniqueViolation   = "23505"
	// pg_database's unique index on the name: two concurrent CREATE DATABASE
	// statements can both pass Postgres's own existence check, and the loser
	// then fails on this index instead of with duplicate_database.
	pgDatabaseNameIndex = "pg_database_datname_index"

	// unlockTimeout bounds the unlock that runs after the caller's context may
	// already be done.
	unlockTimeout = 10 * time.Second

	// lockKeySQL derives the advisory lock key from the schema, so migrators of
	// different schemas in one database (one per parallel test) never wait for
	// each other while processes migrating the same schema do.
	lockKeySQL = `SELECT current_schema(), hashtext('daybook.migrations.' || current_schema())::bigint`

	createTableSQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`
)

var fileNamePattern = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$`)

// EnsureDatabase creates the database named in databaseURL when it does not
// exist yet. It connects to the maintenance database "postgres" on the same
// server with the same credentials. Several processes may call it at once.
func EnsureDatabase(ctx context.Context, databaseURL string) error {
	// pgxpool's parser, because the URL may carry pool_* settings that
	// pgx.ParseConfig would pass to the server, which rejects them.
	poolConfig, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse database url: %w", err)
	}
	config := poolConfig.ConnConfig
	name := config.Database
	if name == "" {
		// Postgres itself falls back to the user's name.
		name = config.User
	}

	maintenance := config.Copy()
	maintenance.Database = maintenanceDatabase
	conn, err := pgx.ConnectConfig(ctx, maintenance)
	if err != nil {
		return fmt.Errorf("connect to database %s: %w", maintenanceDatabase, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var exists bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists)
	if err != nil {
		return fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return nil
	}

	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if err != nil && !createdConcurrently(err) {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// createdConcurrently reports whether err means another session created the
// same database between our existence check and our CREATE DATABASE.
func createdConcurrently(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == sqlStateDuplicateDatabase ||
		(pgErr.Code == sqlStateUniqueViolation && pgErr.ConstraintName == pgDatabaseNameIndex)
}

// Migrator applies and reverts migrations on the schema that comes first on
// its pool's search_path. It is safe for concurrent use, also across
// processes.
type Migrator struct {
	pool    *pgxpool.Pool
	scripts []script // index i holds version i+1
}

type script struct {
	Migration
	up      string
	down    string
	hasDown bool
}

// New reads and checks every migration in files. File names must match
// NNNN_name.up.sql or NNNN_name.down.sql; versions run from 1 without gaps, and
// each has an up file. Files not ending in .sql and directories are ignored.
func New(pool *pgxpool.Pool, files fs.FS) (*Migrator, error) {
	if pool == nil {
		return nil, errors.New("new migrator: pool is nil")
	}
	if files == nil {
		return nil, errors.New("new migrator: files is nil")
	}
	scripts, err := readScripts(files)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	return &Migrator{pool: pool, scripts: scripts}, nil
}

func readScripts(files fs.FS) ([]script, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, err
	}

	type found struct {
		script
		firstFile string
		hasUp     bool
	}
	byVersion := make(map[int]*found)
	for _, entry := range entries {
		fileName := entry.Name()
		if entry.IsDir() || path.Ext(fileName) != ".sql" {
			continue
		}
		match := fileNamePattern.FindStringSubmatch(fileName)
		if match == nil {
			return nil, fmt.Errorf("file %s: name must look like 0001_name.up.sql or 0001_name.down.sql", fileName)
		}
		version, err := strconv.Atoi(match[1])
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", fileName, err)
		}
		if version == 0 {
			return nil, fmt.Errorf("file %s: versions start at 0001", fileName)
		}
		name, direction := match[2], match[3]

		body, err := fs.ReadFile(files, fileName)
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", fileName, err)
		}

		f := byVersion[version]
		if f == nil {
			f = &found{script: script{Migration: Migration{Version: version, Name: name}}, firstFile: fileName}
			byVersion[version] = f
		}
		if f.Name != name {
			return nil, fmt.Errorf("version %d is used twice: %s and %s", version, f.firstFile, fileName)
		}
		switch direction {
		case "up":
			if f.hasUp {
				return nil, fmt.Errorf("version %d has two up files", version)
			}
			f.up, f.hasUp = string(body), true
		case "down":
			if f.hasDown {
				return nil, fmt.Errorf("version %d has two down files", version)
			}
			f.down, f.hasDown = string(body), true
		}
	}

	scripts := make([]script, 0, len(byVersion))
	for version := 1; version <= len(byVersion); version++ {
		f, ok := byVersion[version]
		if !ok {
			return nil, fmt.Errorf("version %d is missing: versions must run from 0001 without gaps", version)
		}
		if !f.hasUp {
			return nil, fmt.Errorf("version %d (%s) has no up file", version, f.Name)
		}
		scripts = append(scripts, f.script)
	}
	return scripts, nil
}

// Up applies every migration not yet applied, in version order, each in its
// own transaction. It returns the migrations it applied, also when it stops at
// one that fails; the failed one and those after it are left unapplied.
func (m *Migrator) Up(ctx context.Context) ([]Migration, error) {
	var applied []Migration
	err := m.withLock(ctx, func(conn *pgx.Conn) error {
		done, err := appliedAt(ctx, conn)
		if err != nil {
			return err
		}
		for _, s := range m.scripts {
			if _, ok := done[s.Version]; ok {
				continue
			}
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, s.up); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, s.Version, s.Name)
				return err
			})
			if err != nil {
				return fmt.Errorf("apply migration %d (%s): %w", s.Version, s.Name, err)
			}
			applied = append(applied, s.Migration)
		}
		return nil
	})
	return applied, err
}

// Down reverts the newest steps applied migrations, newest first, each in its
// own transaction; fewer when fewer are applied. It checks that every one of
// them has a down file before reverting any. It returns the migrations it
// reverted, also when it stops at one that fails.
func (m *Migrator) Down(ctx context.Context, steps int) ([]Migration, error) {
	if steps < 0 {
		return nil, fmt.Errorf("revert %d migrations: steps must not be negative", steps)
	}
	var reverted []Migration
	err := m.withLock(ctx, func(conn *pgx.Conn) error {
		done, err := appliedAt(ctx, conn)
		if err != nil {
			return err
		}
		// Walk every known version newest first, plus the highest version
		// applied, so a schema migrated by a newer binary is refused rather
		// than having an older migration reverted under the newer one.
		highest := len(m.scripts)
		for version := range done {
			highest = max(highest, version)
		}
		var plan []script
		for version := highest; version >= 1 && len(plan) < steps; version-- {
			if _, ok := done[version]; !ok {
				continue
			}
			if version > len(m.scripts) {
				return fmt.Errorf("revert migration %d: it is applied but unknown to this binary", version)
			}
			s := m.scripts[version-1]
			if !s.hasDown {
				return fmt.Errorf("revert migration %d (%s): it has no down file", s.Version, s.Name)
			}
			plan = append(plan, s)
		}

		for _, s := range plan {
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, s.down); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `DELETE FROM schema_migrations WHERE version = $1`, s.Version)
				return err
			})
			if err != nil {
				return fmt.Errorf("revert migration %d (%s): %w", s.Version, s.Name, err)
			}
			reverted = append(reverted, s.Migration)
		}
		return nil
	})
	return reverted, err
}

// Status lists every known migration in version order and whether it is
// applied.
func (m *Migrator) Status(ctx context.Context) ([]MigrationStatus, error) {
	var statuses []MigrationStatus
	err := m.withLock(ctx, func(conn *pgx.Conn) error {
		done, err := appliedAt(ctx, conn)
		if err != nil {
			return err
		}
		statuses = make([]MigrationStatus, 0, len(m.scripts))
		for _, s := range m.scripts {
			at, ok := done[s.Version]
			statuses = append(statuses, MigrationStatus{Migration: s.Migration, Applied: ok, AppliedAt: at})
		}
		return nil
	})
	return statuses, err
}

// withLock runs fn on one pool connection while holding the schema's advisory
// lock on it, after making sure schema_migrations exists. A session lock is
// released only by unlocking on the same session or by ending it, so all work
// happens on that one connection.
func (m *Migrator) withLock(ctx context.Context, fn func(conn *pgx.Conn) error) (err error) {
	pooled, err := m.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	conn := pooled.Conn()

	var schema *string
	var key int64
	if err := conn.QueryRow(ctx, lockKeySQL).Scan(&schema, &key); err != nil {
		pooled.Release()
		return fmt.Errorf("derive migration lock key: %w", err)
	}
	if schema == nil {
		pooled.Release()
		return errors.New("derive migration lock key: no schema on the search_path exists")
	}

	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		// The server may have granted the lock just as the call was cancelled;
		// ending the session is the only way to be sure it is not kept.
		discard(ctx, pooled)
		return fmt.Errorf("lock migrations of schema %s: %w", *schema, err)
	}
	defer func() {
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		var unlocked bool
		unlockErr := conn.QueryRow(unlockCtx, `SELECT pg_advisory_unlock($1)`, key).Scan(&unlocked)
		if unlockErr == nil && !unlocked {
			unlockErr = errors.New("lock was not held")
		}
		if unlockErr != nil {
			discard(ctx, pooled)
			err = errors.Join(err, fmt.Errorf("unlock migrations of schema %s: %w", *schema, unlockErr))
			return
		}
		pooled.Release()
	}()

	if _, err := conn.Exec(ctx, createTableSQL); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	return fn(conn)
}

// discard closes the connection, ending its session and any lock it holds,
// and releases it, which makes the pool drop it.
func discard(ctx context.Context, pooled *pgxpool.Conn) {
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
	defer cancel()
	_ = pooled.Conn().Close(closeCtx) // the session is gone either way
	pooled.Release()
}

// appliedAt returns when each applied version was applied.
func appliedAt(ctx context.Context, conn *pgx.Conn) (map[int]time.Time, error) {
	rows, err := conn.Query(ctx, `SELECT version, applied_at FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	done := make(map[int]time.Time)
	var version int
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&version, &at}, func() error {
		done[version] = at
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return done, nil
}
