package registry

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// dialect holds everything that differs between SQLite and PostgreSQL, so
// the operations in assignments.go and backups.go share one SQL text.
type dialect interface {
	// name is the OpenTelemetry db.system value and the suffix of
	// dialect-specific migration files.
	name() string
	// timeArg converts a UTC, microsecond-truncated time into a query
	// argument that sorts and compares correctly in this database.
	timeArg(t time.Time) any
	// uniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
	// constraint failure.
	uniqueViolation(err error) bool
	// foreignKeyViolation reports whether err is a FOREIGN KEY failure.
	foreignKeyViolation(err error) bool
	// migrationsTable is the DDL of schema_migrations.
	migrationsTable() string
	// reusesPreparedStatements reports whether the Store prepares its
	// hot-path statements once and reuses them (statements.go) rather than
	// sending their text each time.
	reusesPreparedStatements() bool
	// lockMigrations keeps other processes from migrating the same database
	// until unlock is called; conn is the connection that migrates.
	lockMigrations(ctx context.Context, conn *sql.Conn) (unlock func(), err error)
	// compact removes erased values from the database's files, outside any
	// transaction, after a migration that erased them.
	compact(ctx context.Context, conn *sql.Conn) error
	// contains is a condition true when the text expression haystack
	// holds the text parameter needle, case-sensitively (LIKE is not, on
	// SQLite).
	contains(haystack, needle string) string
}

// sqliteTimeLayout stores times as fixed-width UTC text with microseconds,
// so that text order is time order and the sqlite3 shell shows them
// readably. Microseconds match PostgreSQL's timestamptz precision, so both
// backends return the same values.
const sqliteTimeLayout = "2006-01-02T15:04:05.000000Z"

// dbTime scans a timestamp from either backend (time.Time from PostgreSQL,
// text from SQLite) into UTC; NULL leaves Valid false.
type dbTime struct {
	Time  time.Time
	Valid bool
}

// Scan implements sql.Scanner.
func (d *dbTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*d = dbTime{}
		return nil
	case time.Time:
		*d = dbTime{Time: x.UTC(), Valid: true}
		return nil
	case string:
		return d.parse(x)
	case []byte:
		return d.parse(string(x))
	default:
		return fmt.Errorf("registry: cannot scan %T as a time", v)
	}
}

func (d *dbTime) parse(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("registry: stored time %q: %w", s, err)
	}
	*d = dbTime{Time: t.UTC(), Valid: true}
	return nil
}
