package registrytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// URLEnv names an existing server to test against instead of the one the
// tests start themselves (a URL or key=value connection string of a database
// the tests may create schemas in).
const URLEnv = "RECOVERY_TEST_POSTGRES_URL"

// adminTimeout bounds creating and dropping a test's schema, so a wedged
// server fails the test instead of hanging it.
const adminTimeout = 30 * time.Second

// shared is the PostgreSQL server the test binary's tests share: started on
// first use, stopped by StopAfter.
var shared struct {
	once sync.Once
	url  string // of a database the tests may create schemas in
	err  error
	stop func()
}

// serverURL returns the shared server's URL, starting it on first use.
func serverURL(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		if u := os.Getenv(URLEnv); u != "" {
			shared.url = u
			return
		}
		shared.url, shared.stop, shared.err = startServer()
	})
	if shared.err != nil {
		t.Fatalf("PostgreSQL for the tests: %v", shared.err)
	}
	return shared.url
}

// Postgres returns the connection URL of a schema of the test's own on the
// shared server, chosen through search_path, so a Store opened on it (or
// several, as replicas would) sees only this test's tables. The schema is
// dropped when the test ends: close everything that uses it in cleanups
// registered after this call.
//
// The URL is in the form the server's was given in: postgres://… for the
// server this package starts.
func Postgres(t testing.TB) string {
	t.Helper()
	base := serverURL(t)
	schema := "test_" + randomHex(t, 8)
	if err := runStatement(base, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("test PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := runStatement(base, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("test PostgreSQL: %v", err)
		}
	})
	dbURL, err := withSearchPath(base, schema)
	if err != nil {
		t.Fatalf("test PostgreSQL URL: %v", err)
	}
	return dbURL
}

// runStatement runs one statement on a connection of its own to dbURL.
func runStatement(dbURL, statement string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, statement); err != nil {
		return fmt.Errorf("%s: %w", statement, err)
	}
	return nil
}

// withSearchPath returns base with search_path set to schema, in either of
// the connection string forms pgx accepts.
func withSearchPath(base, schema string) (string, error) {
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			return "", err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return base + " search_path=" + schema, nil
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestingM is what a TestMain runs: *testing.M, or a wrapper of it such as
// StopAfter's (goleak.VerifyTestMain accepts either).
type TestingM interface {
	Run() int
}

// StopAfter wraps m so that running it also stops the shared server (if
// this test binary started one) once the tests are done, before anything
// that checks for leftovers (goleak) looks:
//
//	func TestMain(m *testing.M) { os.Exit(registrytest.StopAfter(m).Run()) }
func StopAfter(m TestingM) TestingM { return stopAfter{m} }

type stopAfter struct{ m TestingM }

func (s stopAfter) Run() int {
	code := s.m.Run()
	if shared.stop != nil {
		shared.stop()
		shared.stop = nil
	}
	return code
}
