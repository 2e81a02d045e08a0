package registry

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

// registryTables are the tables the embedded migrations make.
var registryTables = []string{"audit_events", "backups", "keys", "schema_migrations", "write_probe"}

func embeddedMigrationNames(t *testing.T, dialect string) []string {
	t.Helper()
	ms, err := loadMigrations(embeddedMigrations, dialect)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.name)
	}
	return names
}

func TestReopenKeepsDataAndMigratesOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		s := db.mustOpen(t)
		key := assignKey(t, s, terms(1, 1), testKey(1))
		if err := s.RecordBackup(ctx, testBackup(1, key.KeyID)); err != nil {
			t.Fatal(err)
		}
		pending, err := s.ReserveAssignment(ctx, terms(1, 2), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		for i := range 2 {
			r := db.mustOpen(t)
			if got, err := r.GetKey(ctx, key.KeyID); err != nil || *got != key {
				t.Errorf("reopen %d: GetKey = %+v, %v; want %+v", i, got, err, key)
			}
			if list, _, err := r.ListBackups(ctx, BackupFilter{}, Page{}); err != nil || len(list) != 1 {
				t.Errorf("reopen %d: %d backups, %v; want 1", i, len(list), err)
			}
			if res, err := r.ReserveAssignment(ctx, terms(1, 2), time.Hour); err != nil || res.State != AssignmentInProgress {
				t.Errorf("reopen %d: pending pair = %+v, %v; want in progress", i, res, err)
			}
		}
		// The reservation made before the reopen is still owned by its token.
		if err := db.mustOpen(t).CompleteAssignment(ctx, pending.Token, testKey(2)); err != nil {
			t.Errorf("CompleteAssignment after reopen: %v", err)
		}
		if got, want := db.appliedMigrations(t), embeddedMigrationNames(t, db.backend); !slices.Equal(got, want) {
			t.Errorf("schema_migrations = %v, want %v", got, want)
		}
		if got := db.tables(t); !slices.Equal(got, registryTables) {
			t.Errorf("tables = %v, want %v", got, registryTables)
		}
	})
}

func TestMigrationFailureLeavesNoPartialSchema(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		broken := withMigrations(os.DirFS(filepath.Join("testdata", "migrations", "broken")))
		s, err := db.open(broken, WithLogger(testLogger(t)))
		if err == nil {
			s.Close()
			t.Fatal("open with a broken migration succeeded")
		}
		if !strings.Contains(err.Error(), "0002_broken.sql") {
			t.Errorf("error %q does not name the failing migration", err)
		}
		if got, want := db.tables(t), []string{"first_table", "schema_migrations"}; !slices.Equal(got, want) {
			t.Errorf("tables after the failure = %v, want %v", got, want)
		}
		if got, want := db.appliedMigrations(t), []string{"0001_first.sql"}; !slices.Equal(got, want) {
			t.Errorf("schema_migrations after the failure = %v, want %v", got, want)
		}

		fixed := withMigrations(os.DirFS(filepath.Join("testdata", "migrations", "fixed")))
		db.mustOpen(t, fixed)
		if got, want := db.tables(t), []string{"first_table", "schema_migrations", "second_table"}; !slices.Equal(got, want) {
			t.Errorf("tables after the fix = %v, want %v", got, want)
		}
		if got, want := db.appliedMigrations(t), []string{"0001_first.sql", "0002_fixed.sql"}; !slices.Equal(got, want) {
			t.Errorf("schema_migrations after the fix = %v, want %v", got, want)
		}
	})
}

func TestReplicasOpeningTogetherMigrateOnce(t *testing.T) {
	const replicas = 4
	forEachBackend(t, func(t *testing.T, db testDB) {
		errs := make([]error, replicas)
		stores := make([]*Store, replicas)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				stores[i], errs[i] = db.open(WithLogger(testLogger(t)))
			}()
		}
		close(start)
		wg.Wait()
		for i := range replicas {
			if errs[i] != nil {
				t.Errorf("replica %d: %v", i, errs[i])
				continue
			}
			stores[i].Close()
		}
		if got, want := db.appliedMigrations(t), embeddedMigrationNames(t, db.backend); !slices.Equal(got, want) {
			t.Errorf("schema_migrations = %v, want %v", got, want)
		}
	})
}

func TestLoadMigrations(t *testing.T) {
	sql := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	set := fstest.MapFS{
		"0002_shared.sql":            sql("shared"),
		"0001_base.sqlite.sql":       sql("sqlite base"),
		"0001_base.postgresql.sql":   sql("postgresql base"),
		"0010_later.postgresql.sql":  sql("postgresql only"),
		"0010_later.sqlite.sql":      sql("sqlite only"),
		"README.md":                  sql("not a migration"),
		"0003_third_of_three.sql":    sql("third"),
		"subdir/0004_ignored.sql":    sql("not at the top"),
		"0005_in_a_directory.sql/x":  sql("a directory named like a file"),
		"0001_base.sqlite.sql.orig":  sql("editor leftovers"),
		"0009_notes.sqlite.sql.bak":  sql("backup"),
		"0011_zzz.postgresql.sql~":   sql("backup"),
		"0012_zzz.txt":               sql("text"),
		"0013_mixed_CASE.sqlite.sql": sql("sqlite mixed"),
	}
	tests := []struct {
		dialect string
		want    []string
	}{
		{"sqlite", []string{"0001_base.sqlite.sql:sqlite base", "0002_shared.sql:shared", "0003_third_of_three.sql:third",
			"0010_later.sqlite.sql:sqlite only", "0013_mixed_CASE.sqlite.sql:sqlite mixed"}},
		{"postgresql", []string{"0001_base.postgresql.sql:postgresql base", "0002_shared.sql:shared", "0003_third_of_three.sql:third",
			"0010_later.postgresql.sql:postgresql only"}},
	}
	for _, tt := range tests {
		ms, err := loadMigrations(set, tt.dialect)
		if err != nil {
			t.Fatalf("%s: %v", tt.dialect, err)
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.name+":"+m.sql)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s:\n got %v\nwant %v", tt.dialect, got, tt.want)
		}
	}

	bad := map[string]fstest.MapFS{
		"two files, one version": {"0001_a.sql": sql("a"), "0001_b.sql": sql("b")},
		"shared and variant":     {"0001_a.sql": sql("a"), "0001_a.sqlite.sql": sql("b")},
		"unknown dialect":        {"0001_a.mysql.sql": sql("a")},
		"no version":             {"first.sql": sql("a")},
		"zero version":           {"0000_a.sql": sql("a")},
		"version without a name": {"0001.sql": sql("a")},
		"negative version":       {"-001_a.sql": sql("a")},
	}
	for name, set := range bad {
		if _, err := loadMigrations(set, "sqlite"); err == nil {
			t.Errorf("%s: loaded, want an error", name)
		}
	}
}

// TestOrphanedMigrationKeepsData: a registry holding keys, backups and a
// live reservation before 0003 keeps all of them through the migration
// (SQLite rebuilds both tables), the backup still references its key, and
// a pair can then be parked as orphaned.
func TestOrphanedMigrationKeepsData(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		before := fstest.MapFS{}
		for _, name := range embeddedMigrationNames(t, db.backend) {
			// NOTE: 0003 and every later one: a registry never had a later
			// migration before 0003.
			if name >= "0003_" {
				continue
			}
			body, err := fs.ReadFile(embeddedMigrations, name)
			if err != nil {
				t.Fatal(err)
			}
			before[name] = &fstest.MapFile{Data: body}
		}
		old := db.mustOpen(t, withMigrations(before))
		key := insertOldKey(t, old, terms(7, 1), testKey(71))
		if err := old.RecordBackup(ctx, testBackup(71, key.KeyID)); err != nil {
			t.Fatal(err)
		}
		pending, err := old.ReserveAssignment(ctx, terms(7, 2), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}

		s := db.mustOpen(t)
		if got, err := s.GetKey(ctx, key.KeyID); err != nil || *got != key {
			t.Errorf("GetKey after the migration = %+v, %v; want %+v", got, err, key)
		}
		if list, _, err := s.ListBackups(ctx, BackupFilter{KeyID: key.KeyID}, Page{}); err != nil || len(list) != 1 {
			t.Errorf("backups of %s after the migration: %d, %v; want 1", key.KeyID, len(list), err)
		}
		if err := s.FailAssignment(ctx, pending.Token, AssignmentOrphaned, "lost answer"); err != nil {
			t.Fatalf("FailAssignment(orphaned) on a reservation made before the migration: %v", err)
		}
		if got, err := s.ReserveAssignment(ctx, terms(7, 2), time.Hour); err != nil || got.State != AssignmentOrphaned {
			t.Errorf("orphaned pair = %+v, %v; want orphaned", got, err)
		}
		// The foreign key still holds: a backup of an unknown key is refused.
		if err := s.RecordBackup(ctx, testBackup(72, "no-such-key")); err == nil {
			t.Error("RecordBackup for an unknown key succeeded after the migration; the foreign key was lost")
		}
		if got := db.tables(t); !slices.Equal(got, registryTables) {
			t.Errorf("tables = %v, want %v", got, registryTables)
		}
	})
}

// TestEmbeddedMigrationsCoverBothBackends keeps a version from being added
// for one backend only.
func TestEmbeddedMigrationsCoverBothBackends(t *testing.T) {
	version := func(name string) string { v, _, _ := strings.Cut(name, "_"); return v }
	var sqliteVersions, postgresVersions []string
	for _, n := range embeddedMigrationNames(t, "sqlite") {
		sqliteVersions = append(sqliteVersions, version(n))
	}
	for _, n := range embeddedMigrationNames(t, "postgresql") {
		postgresVersions = append(postgresVersions, version(n))
	}
	if len(sqliteVersions) == 0 || !slices.Equal(sqliteVersions, postgresVersions) {
		t.Errorf("migration versions differ: sqlite %v, postgresql %v", sqliteVersions, postgresVersions)
	}
}
