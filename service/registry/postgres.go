package registry

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// defaultPostgresConns bounds one process's pool, so that a handful of
// replicas stay well inside PostgreSQL's default max_connections (100).
const defaultPostgresConns = 16

// migrationLockID is the pg_advisory_lock key that serialises migrations of
// one database ("recovery" in ASCII, so operators can recognise it in
// pg_locks).
const migrationLockID int64 = 0x7265636f76657279

// PostgreSQL SQLSTATE codes the registry tells apart.
const (
	pgUniqueViolation     = "23505"
	pgForeignKeyViolation = "23503"
)

// OpenPostgres opens (migrating) a PostgreSQL registry.
//
// url is a libpq URL or key=value string (pgx syntax; search_path and other
// run-time parameters may be given in it). Replicas opening together
// migrate one at a time under an advisory lock.
func OpenPostgres(ctx context.Context, url string, opts ...Option) (*Store, error) {
	o := buildOptions(opts)
	if url == "" {
		return nil, fmt.Errorf("%w: PostgreSQL URL is empty", ErrInvalidArgument)
	}
	// pgx redacts the password in its parse errors.
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%w: PostgreSQL URL: %w", ErrInvalidArgument, err)
	}
	db := stdlib.OpenDB(*cfg)
	conns := defaultPostgresConns
	if o.maxConns > 0 {
		conns = o.maxConns
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("registry: connect to PostgreSQL: %w", err)
	}
	return open(ctx, postgresDialect{}, db, db, o)
}

// pgAdminShutdown is SQLSTATE 57P01: the server ended this connection (a
// terminated backend, a restart), so another connection may succeed.
const pgAdminShutdown = "57P01"

// StaleConnection reports whether err came from a pooled connection the
// database had already closed: database/sql's driver.ErrBadConn, or
// PostgreSQL's admin_shutdown on a connection terminated while it sat idle.
// A fresh connection may well succeed, so a health check tries again
// before it reports an outage.
func StaleConnection(err error) bool {
	var pe *pgconn.PgError
	return errors.Is(err, driver.ErrBadConn) || errors.As(err, &pe) && pe.Code == pgAdminShutdown
}

type postgresDialect struct{}

func (postgresDialect) name() string { return "postgresql" }

func (postgresDialect) timeArg(t time.Time) any { return t.UTC() }

func (postgresDialect) uniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == pgUniqueViolation
}

func (postgresDialect) foreignKeyViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == pgForeignKeyViolation
}

// reusesPreparedStatements is false: pgx already prepares each statement
// once per connection and caches it, and it drops a cached statement that
// fails (say, after another replica's migration changed a table under it),
// which a database/sql prepared statement would keep failing with.
func (postgresDialect) reusesPreparedStatements() bool { return false }

func (postgresDialect) migrationsTable() string {
	return `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    BIGINT PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at TIMESTAMPTZ NOT NULL
)`
}

// compact rewrites backups (VACUUM FULL), so that the row versions the
// erasing migration replaced are gone from the table's files; it takes the
// table's exclusive lock once, while the replica that migrated holds the
// migration lock.
func (postgresDialect) compact(ctx context.Context, conn *sql.Conn) error {
	_, err := conn.ExecContext(ctx, `VACUUM FULL backups`)
	return err
}

// lockMigrations takes a session advisory lock on conn, so replicas that
// start together migrate one after the other and the later ones find the
// work done.
func (postgresDialect) lockMigrations(ctx context.Context, conn *sql.Conn) (func(), error) {
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLockID); err != nil {
		return nil, fmt.Errorf("registry: take migration lock: %w", err)
	}
	return func() {
		// NOTE: a fresh context: the unlock must run even when ctx was
		// cancelled mid-migration, or the lock lives as long as the
		// pooled connection.
		unlockCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(unlockCtx, `SELECT pg_advisory_unlock($1)`, migrationLockID); err != nil {
			// Closing the session releases the lock; make sure the pool
			// drops this connection rather than reusing it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}, nil
}

func (postgresDialect) contains(haystack, needle string) string {
	return "strpos(" + haystack + ", " + needle + ") > 0"
}
