package registry

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// migrationFiles are the schema migrations, named NNNN_what.sql when both
// backends share the SQL, or NNNN_what.sqlite.sql and NNNN_what.postgresql.sql
// (the dialect names of db.system)
// when the dialects differ. Applied migrations are never edited: a change is
// a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

var embeddedMigrations = mustSub(migrationFiles, "migrations")

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

// erasingMigration is the migration that erases values the registry must no
// longer hold (0005: digests of plaintexts); after it, the dialect compacts
// the database so that they are gone from its files, not just unreachable.
const erasingMigration = 5

// migration is one schema step for one dialect.
type migration struct {
	version int64
	name    string // file name, for schema_migrations and errors
	sql     string
}

// loadMigrations returns the migrations for dialect in version order. A
// version must have exactly one file that applies to the dialect: either a
// shared one or the dialect's variant.
func loadMigrations(fsys fs.FS, dialect string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("registry: read migrations: %w", err)
	}
	byVersion := map[int64]migration{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".sql" {
			continue
		}
		stem := strings.TrimSuffix(name, ".sql")
		if variant := path.Ext(stem); variant != "" {
			switch variant[1:] {
			case dialect:
			case sqliteDialect{}.name(), postgresDialect{}.name():
				continue // the other backend's variant
			default:
				return nil, fmt.Errorf("registry: migration %s: unknown dialect %q", name, variant[1:])
			}
			stem = strings.TrimSuffix(stem, variant)
		}
		digits, _, ok := strings.Cut(stem, "_")
		version, err := strconv.ParseInt(digits, 10, 64)
		if !ok || err != nil || version <= 0 {
			return nil, fmt.Errorf("registry: migration %s: name must start with a positive version and '_'", name)
		}
		if prev, dup := byVersion[version]; dup {
			return nil, fmt.Errorf("registry: migrations %s and %s both have version %d for %s", prev.name, name, version, dialect)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("registry: read migration %s: %w", name, err)
		}
		byVersion[version] = migration{version: version, name: name, sql: string(body)}
	}
	out := make([]migration, 0, len(byVersion))
	for _, m := range byVersion {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// migrate applies the migrations this database lacks, each in its own
// transaction together with its schema_migrations row, so a failing
// migration leaves neither part of its schema nor a record behind.
func (s *Store) migrate(ctx context.Context, fsys fs.FS) error {
	migrations, err := loadMigrations(fsys, s.dialect.name())
	if err != nil {
		return err
	}
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("registry: migrate: %w", err)
	}
	defer conn.Close()

	unlock, err := s.dialect.lockMigrations(ctx, conn)
	if err != nil {
		return err
	}
	defer unlock()

	if _, err := conn.ExecContext(ctx, s.dialect.migrationsTable()); err != nil {
		return fmt.Errorf("registry: create schema_migrations: %w", err)
	}
	erased := false
	for _, m := range migrations {
		applied, err := s.applyMigration(ctx, conn, m)
		if err != nil {
			return err
		}
		if applied {
			s.log.InfoContext(ctx, "registry schema migrated", "version", m.version, "migration", m.name)
			erased = erased || m.version == erasingMigration
		}
	}
	if erased {
		if err := s.dialect.compact(ctx, conn); err != nil {
			return fmt.Errorf("registry: removing erased values from the database files: %w", err)
		}
	}

	// A newer replica may have migrated past this binary during a rolling
	// upgrade; that is allowed (migrations only add), but worth a word.
	var newest sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("registry: read schema version: %w", err)
	}
	if len(migrations) > 0 && newest.Int64 > migrations[len(migrations)-1].version {
		s.log.WarnContext(ctx, "registry schema is newer than this binary",
			"schema_version", newest.Int64, "binary_version", migrations[len(migrations)-1].version)
	}
	return nil
}

// applyMigration applies m unless schema_migrations already records it. The
// check is inside the transaction so that, on SQLite, the IMMEDIATE write
// lock makes two processes opening one file take turns.
func (s *Store) applyMigration(ctx context.Context, conn *sql.Conn, m migration) (applied bool, err error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("registry: migration %s: begin: %w", m.name, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&n); err != nil {
		return false, fmt.Errorf("registry: migration %s: check: %w", m.name, err)
	}
	if n > 0 {
		return false, tx.Rollback()
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, fmt.Errorf("registry: migration %s: %w", m.name, err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		m.version, m.name, s.dialect.timeArg(s.now())); err != nil {
		return false, fmt.Errorf("registry: migration %s: record: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("registry: migration %s: commit: %w", m.name, err)
	}
	return true, nil
}
