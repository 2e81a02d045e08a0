package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOpenSQLiteMakesAPrivateWALDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "registry")
	path := filepath.Join(dir, "registry.db")
	s, err := OpenSQLite(context.Background(), path, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	key := assignKey(t, s, terms(1, 1), testKey(1)) // so the WAL holds a row
	if err := s.RecordBackup(context.Background(), testBackup(1, key.KeyID)); err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600, path + "-wal": 0o600, path + "-shm": 0o600}
	for p, want := range modes {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode = %v, want %v", p, fi.Mode(), want)
		}
	}
	pragmas := []struct{ db, pragma, want string }{
		{"write", "journal_mode", "wal"},
		{"write", "foreign_keys", "1"},
		{"write", "busy_timeout", fmt.Sprint(sqliteBusyTimeout.Milliseconds())},
		{"write", "synchronous", "2"}, // FULL
		{"write", "temp_store", "2"},  // MEMORY: savepoints' sub-journals stay off disk
		{"read", "foreign_keys", "1"},
		{"read", "query_only", "1"},
		{"read", "busy_timeout", fmt.Sprint(sqliteBusyTimeout.Milliseconds())},
	}
	for _, p := range pragmas {
		db := s.write
		if p.db == "read" {
			db = s.read
		}
		var got string
		if err := db.QueryRowContext(t.Context(), "PRAGMA "+p.pragma).Scan(&got); err != nil {
			t.Fatalf("%s PRAGMA %s: %v", p.db, p.pragma, err)
		}
		if got != p.want {
			t.Errorf("%s PRAGMA %s = %s, want %s", p.db, p.pragma, got, p.want)
		}
	}
	// The read pool cannot write, even by mistake.
	if _, err := s.read.ExecContext(t.Context(), `DELETE FROM keys`); err == nil {
		t.Error("the read pool accepted a write")
	}
}

func TestOpenRefusesBadTargets(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, []byte(strings.Repeat("not a database\n", 300)), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	const password = "s3cret-pa55word"
	tests := []struct {
		name    string
		open    func() (*Store, error)
		wantErr error // nil: any error
	}{
		{"empty SQLite path", func() (*Store, error) { return OpenSQLite(ctx, "") }, ErrInvalidArgument},
		{"SQLite path with '?'", func() (*Store, error) { return OpenSQLite(ctx, filepath.Join(t.TempDir(), "r.db?mode=ro")) }, ErrInvalidArgument},
		{"SQLite directory under a file", func() (*Store, error) { return OpenSQLite(ctx, filepath.Join(file, "r.db")) }, nil},
		{"SQLite file that is not a database", func() (*Store, error) { return OpenSQLite(ctx, file) }, nil},
		{"empty PostgreSQL URL", func() (*Store, error) { return OpenPostgres(ctx, "") }, ErrInvalidArgument},
		{"malformed PostgreSQL URL", func() (*Store, error) {
			return OpenPostgres(ctx, "postgres://user:"+password+"@127.0.0.1:notaport/db")
		}, ErrInvalidArgument},
		{"PostgreSQL that does not answer", func() (*Store, error) {
			return OpenPostgres(ctx, fmt.Sprintf("postgres://user:%s@127.0.0.1:%d/db?sslmode=disable&connect_timeout=5", password, port))
		}, nil},
	}
	for _, tt := range tests {
		s, err := tt.open()
		if err == nil {
			s.Close()
			t.Errorf("%s: opened, want an error", tt.name)
			continue
		}
		if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.wantErr)
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("%s: error reveals the password: %v", tt.name, err)
		}
	}
}

func TestPing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s := db.mustOpen(t)
		if err := s.Ping(context.Background()); err != nil {
			t.Errorf("Ping: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Ping(context.Background()); err == nil {
			t.Error("Ping after Close succeeded")
		}
	})
}

// freePort finds a loopback port nobody listens on, for a server that does
// not answer.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // a port probe, closed at once: nothing to cancel
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// TestProbeWrite: the write probe commits (again and again), and fails
// while another connection holds the registry's write lock, where Ping, which
// only proves a connection, still passes. Readiness relies on the difference.
func TestProbeWrite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s := db.mustOpen(t)
		for range 2 {
			if err := s.ProbeWrite(t.Context()); err != nil {
				t.Fatalf("ProbeWrite: %v", err)
			}
		}
		other := db.inspect(t)
		conn, err := other.write.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		lock := []string{"BEGIN EXCLUSIVE"}
		if db.backend == "postgresql" {
			lock = []string{"BEGIN", "LOCK TABLE write_probe IN ACCESS EXCLUSIVE MODE"}
		}
		for _, stmt := range lock {
			if _, err := conn.ExecContext(t.Context(), stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		if err := s.ProbeWrite(ctx); err == nil {
			t.Error("ProbeWrite succeeded while another connection held the write lock")
		}
		if err := s.Ping(t.Context()); err != nil {
			t.Errorf("Ping: %v (it checks a connection, not a write)", err)
		}
		if _, err := conn.ExecContext(t.Context(), "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		_ = conn.Close()
		if err := s.ProbeWrite(t.Context()); err != nil {
			t.Errorf("ProbeWrite after the lock was released: %v", err)
		}
	})
}
