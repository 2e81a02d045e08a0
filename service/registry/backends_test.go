package registry

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/walletprovider/recoveryservice/service/registry/registrytest"
)

// TestMain stops the shared test PostgreSQL once the tests are done.
func TestMain(m *testing.M) { os.Exit(registrytest.StopAfter(m).Run()) }

// testDB is one test's own database on one backend. open opens another
// Store on it (another "replica" when called twice); inspect opens one that
// applies no migrations, to look at what earlier opens left.
type testDB struct {
	backend     string
	open        func(opts ...Option) (*Store, error)
	tablesQuery string
	// sqlitePath is the SQLite file ("" on PostgreSQL).
	sqlitePath string
}

// mustOpen opens a Store on db and closes it when the test ends. Its log
// goes to the test's log.
func (db testDB) mustOpen(t *testing.T, opts ...Option) *Store {
	t.Helper()
	s, err := db.open(append([]Option{WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatalf("open %s registry: %v", db.backend, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// inspect opens db without applying migrations.
func (db testDB) inspect(t *testing.T) *Store {
	t.Helper()
	return db.mustOpen(t, withMigrations(fstest.MapFS{}))
}

// tables lists db's tables, sorted.
func (db testDB) tables(t *testing.T) []string {
	t.Helper()
	return queryStrings(t, db.inspect(t), db.tablesQuery)
}

// appliedMigrations lists the names schema_migrations records, by version.
func (db testDB) appliedMigrations(t *testing.T) []string {
	t.Helper()
	return queryStrings(t, db.inspect(t), `SELECT name FROM schema_migrations ORDER BY version`)
}

func queryStrings(t *testing.T, s *Store, query string) []string {
	t.Helper()
	rows, err := s.read.QueryContext(t.Context(), query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// testLogger sends a Store's log to t.Log, so it shows with the test that
// caused it.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// backends is the table every registry test runs on.
var backends = []struct {
	name  string
	newDB func(t testing.TB) testDB
}{
	{"sqlite", newSQLiteDB},
	{"postgresql", newPostgresDB},
}

// forEachBackend runs fn as a parallel subtest per backend, each with a
// fresh database of its own.
func forEachBackend(t *testing.T, fn func(t *testing.T, db testDB)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.newDB(t))
		})
	}
}

// newSQLiteDB is a file in a directory that does not exist yet, so every
// test also exercises creating it.
func newSQLiteDB(t testing.TB) testDB {
	path := filepath.Join(t.TempDir(), "registry", "registry.db")
	return testDB{
		backend: "sqlite",
		open: func(opts ...Option) (*Store, error) {
			return OpenSQLite(context.Background(), path, opts...)
		},
		tablesQuery: `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`,
		sqlitePath:  path,
	}
}

// newPostgresDB is a schema of its own on the shared test server
// (registrytest), dropped when the test ends.
func newPostgresDB(t testing.TB) testDB {
	dbURL := registrytest.Postgres(t)
	return testDB{
		backend: "postgresql",
		open: func(opts ...Option) (*Store, error) {
			return OpenPostgres(context.Background(), dbURL, opts...)
		},
		tablesQuery: `SELECT table_name::text FROM information_schema.tables
			WHERE table_schema = current_schema() ORDER BY table_name`,
	}
}

// testClock is a clock tests move by hand, so lease expiry and ordering
// never depend on how fast the machine is.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// terms returns distinct, valid assignment terms for user i of customer c.
func terms(c, i int) KeyTerms {
	return KeyTerms{
		UserIdentifier: fmt.Sprintf("user-%03d", i),
		CustomerID:     fmt.Sprintf("customer-%d", c),
		CustomerName:   fmt.Sprintf("Customer %d", c),
		PackageID:      fmt.Sprintf("package-%d", c),
		PackageName:    "Standard",
		KeyEnvironment: "HOT",
		Caller:         "wallet-api",
	}
}

// testKey returns a distinct key for i: the registry stores public keys as
// opaque hex, so a digest stands in for DER. Its public key is uppercase,
// as a caller might send it.
func testKey(i int) Key {
	pub := sha512.Sum512([]byte(fmt.Sprintf("public key %d", i)))
	fp := sha256.Sum256(pub[:])
	return Key{
		KeyID:        fmt.Sprintf("key-%04d", i),
		PublicKeyHex: fmt.Sprintf("%X", pub[:]),
		Fingerprint:  hex.EncodeToString(fp[:]),
		Receipt: Receipt{
			Signature:     fmt.Sprintf("c2lnbmF0dXJl%04d", i),
			SignedPayload: fmt.Sprintf(`{"key_id":"key-%04d","public_key":"%x"}`, i, pub[:]),
			SigningKeyID:  "enclave-signing-key-v1",
		},
	}
}

// assignKey reserves and completes an assignment, returning the key as the
// registry should record it.
func assignKey(t *testing.T, s *Store, tm KeyTerms, k Key) Key {
	t.Helper()
	ctx := context.Background()
	res, err := s.ReserveAssignment(ctx, tm, time.Minute)
	if err != nil || res.State != AssignmentReserved {
		t.Fatalf("ReserveAssignment(%s/%s) = %v, %v; want reserved", tm.CustomerID, tm.UserIdentifier, res.State, err)
	}
	if err := s.CompleteAssignment(ctx, res.Token, k); err != nil {
		t.Fatalf("CompleteAssignment(%s): %v", k.KeyID, err)
	}
	got, err := s.GetKey(ctx, k.KeyID)
	if err != nil {
		t.Fatalf("GetKey(%s): %v", k.KeyID, err)
	}
	return *got
}

// testBackup returns a distinct, valid backup of key for i.
func testBackup(i int, keyID string) Backup {
	sum := sha256.Sum256([]byte(fmt.Sprintf("backup %d", i)))
	// A data backup carries no checksum: its only one is the plaintext's.
	checksum := fmt.Sprintf("%X", sum[:])
	if i%2 == 0 {
		checksum = ""
	}
	return Backup{
		BackupID:   fmt.Sprintf("backup-%04d", i),
		BackupType: []string{"data", "file"}[i%2],
		KeyID:      keyID,
		Checksum:   checksum,
		SizeBytes:  int64(100 + i),
		Metadata: BackupMetadata{
			Description:      fmt.Sprintf("backup number %d", i),
			ContentType:      "application/octet-stream",
			OriginalFilename: fmt.Sprintf("file-%d.bin", i),
		},
		Caller: "wallet-api",
	}
}
