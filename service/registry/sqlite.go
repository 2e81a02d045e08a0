package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteBusyTimeout is how long a writer waits for another process's write
// lock before failing; writers in one process never wait on the file lock
// because they share one connection.
const sqliteBusyTimeout = 5 * time.Second

// defaultSQLiteReaders is the size of the read-only pool: enough for
// listings to run beside the writer, few enough for a small machine.
const defaultSQLiteReaders = 4

// OpenSQLite opens (creating and migrating) a SQLite registry at path, WAL mode.
//
// The parent directory is created 0700 when missing. Writes go through one
// connection whose transactions begin IMMEDIATE (the single writer SQLite
// allows), reads through a small query-only pool; several processes may
// share the file, waiting up to five seconds for each other's write lock.
func OpenSQLite(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o := buildOptions(opts)
	if path == "" {
		return nil, fmt.Errorf("%w: SQLite path is empty", ErrInvalidArgument)
	}
	// NOTE: the driver cuts the DSN at the first '?', so such a path would
	// silently open another file.
	if strings.Contains(path, "?") {
		return nil, fmt.Errorf("%w: SQLite path must not contain '?'", ErrInvalidArgument)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("registry: SQLite path: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("registry: create SQLite directory: %w", err)
	}
	// NOTE: a new file is created here, 0600, before SQLite opens it:
	// SQLite gives the -wal and -shm files, which hold recent rows, the
	// main file's mode.
	if f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil { //nolint:gosec // G304: the path is the operator's configuration
		_ = f.Close()
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("registry: create SQLite file: %w", err)
	}

	busy := fmt.Sprintf("_pragma=busy_timeout(%d)", sqliteBusyTimeout.Milliseconds())
	// synchronous(FULL): a recorded assignment must survive power loss, or
	// the key it names is orphaned upstream. secure_delete(1): what a write
	// deletes or overwrites is zeroed in the file, not left in free space.
	// temp_store(MEMORY): the sub-journal of the group commit's savepoints
	// (batch.go) stays in memory instead of spilling to a temporary file
	// (a file created, written with copies of registry pages and unlinked
	// per batch: 4-5% of recoveryd's CPU under SecureData c=256). It only
	// undoes a failed write within its transaction; WAL recovery never
	// reads it, so durability is unchanged.
	writeDSN := abs + "?" + strings.Join([]string{
		busy,
		"_pragma=journal_mode(WAL)",
		"_pragma=secure_delete(1)",
		"_pragma=foreign_keys(1)",
		"_pragma=synchronous(FULL)",
		"_pragma=temp_store(MEMORY)",
		"_txlock=immediate",
	}, "&")
	readDSN := abs + "?" + strings.Join([]string{
		busy,
		"_pragma=foreign_keys(1)",
		"_pragma=query_only(1)",
	}, "&")

	write, err := sql.Open("sqlite", writeDSN)
	if err != nil {
		return nil, fmt.Errorf("registry: open SQLite: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	// NOTE: the writer connects first so the file exists in WAL mode before
	// any reader opens it.
	if err := connectSQLite(ctx, write); err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("registry: open SQLite: %w", err)
	}

	read, err := sql.Open("sqlite", readDSN)
	if err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("registry: open SQLite: %w", err)
	}
	readers := defaultSQLiteReaders
	if o.maxConns > 0 {
		readers = o.maxConns
	}
	read.SetMaxOpenConns(readers)
	read.SetMaxIdleConns(readers)
	s, err := open(ctx, sqliteDialect{}, write, read, o)
	if err != nil {
		return nil, err
	}
	// Group commit: the one writer commits the writes waiting together.
	s.batch = newBatcher(write)
	return s, nil
}

// connectSQLite makes db's first connection. Switching a new file to WAL
// needs an exclusive lock, and SQLite answers SQLITE_BUSY at once, without
// waiting in the busy handler, when processes opening the same new file race
// for it; so a busy answer is retried until the busy timeout has passed.
func connectSQLite(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(sqliteBusyTimeout)
	for {
		err := db.PingContext(ctx)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type sqliteDialect struct{}

// compact rewrites the file (VACUUM) and empties the WAL, which still holds
// the pages as they were before the migration.
func (sqliteDialect) compact(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, `VACUUM`); err != nil {
		return err
	}
	_, err := conn.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	return err
}

func (sqliteDialect) name() string { return "sqlite" }

func (sqliteDialect) timeArg(t time.Time) any { return t.UTC().Format(sqliteTimeLayout) }

func (sqliteDialect) uniqueViolation(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) &&
		(se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

func (sqliteDialect) foreignKeyViolation(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// reusesPreparedStatements is true: the driver keeps a prepared statement's
// compiled program, and compiling SQL text was a quarter of the CPU of a
// repeat AssignKey (docs/benchmarks.md).
func (sqliteDialect) reusesPreparedStatements() bool { return true }

func (sqliteDialect) migrationsTable() string {
	return `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at TEXT NOT NULL
) STRICT`
}

// lockMigrations needs no lock of its own on SQLite: each migration runs in
// a BEGIN IMMEDIATE transaction that checks schema_migrations first, and the
// write lock serialises processes.
func (sqliteDialect) lockMigrations(context.Context, *sql.Conn) (func(), error) {
	return func() {}, nil
}

func (sqliteDialect) contains(haystack, needle string) string {
	return "instr(" + haystack + ", " + needle + ") > 0"
}
