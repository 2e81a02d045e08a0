package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgresURLEnv names an existing server to test against instead of the
// one the tests start themselves.
const postgresURLEnv = "RECOVERY_TEST_POSTGRES_URL"

// testPostgres is the PostgreSQL server the tests share: started on first
// use, stopped by TestMain.
var testPostgres struct {
	once sync.Once
	url  string // of a database the tests may create schemas in
	err  error
	stop func()
}

// postgresURL returns the shared server's URL, starting it on first use.
// A machine without the server fails the test loudly: the registry's
// PostgreSQL code is never skipped.
func postgresURL(t *testing.T) string {
	t.Helper()
	testPostgres.once.Do(func() {
		if u := os.Getenv(postgresURLEnv); u != "" {
			testPostgres.url = u
			return
		}
		testPostgres.url, testPostgres.stop, testPostgres.err = startPostgres()
	})
	if testPostgres.err != nil {
		t.Fatalf("PostgreSQL for the registry tests: %v", testPostgres.err)
	}
	return testPostgres.url
}

func stopTestPostgres() {
	if testPostgres.stop != nil {
		testPostgres.stop()
	}
}

// postgresBinDir finds the newest Debian PostgreSQL server installation.
func postgresBinDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", errors.New("initdb not found under /usr/lib/postgresql/*/bin: " +
			"install the server with `apt-get install postgresql` (make system-deps does), " +
			"or point " + postgresURLEnv + " at a server")
	}
	version := func(p string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return v
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return filepath.Dir(matches[0]), nil
}

// startPostgres runs initdb and pg_ctl in a temporary directory, on a free
// loopback port, tuned for a fast start rather than durability, and creates
// the database the tests use. PostgreSQL refuses to run as root, so as root
// it runs as the postgres system user.
func startPostgres() (dbURL string, stop func(), err error) {
	bin, err := postgresBinDir()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "registry-postgres-")
	if err != nil {
		return "", nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return "", nil, fmt.Errorf("running as root needs the postgres system user (apt-get install postgresql creates it): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", nil, err
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	run := func(name string, args ...string) error {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", name, err, out)
		}
		return nil
	}

	data := filepath.Join(dir, "data")
	if err := run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync"); err != nil {
		return "", nil, err
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	serverOpts := strings.Join([]string{
		"-h 127.0.0.1", "-p " + strconv.Itoa(port), "-k " + dir,
		"-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
		"-c shared_buffers=16MB", "-c max_connections=200",
	}, " ")
	if err := run("pg_ctl", "start", "-w", "-t", "60", "-D", data,
		"-l", filepath.Join(dir, "server.log"), "-o", serverOpts); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		return "", nil, fmt.Errorf("%w\nserver log:\n%s", err, log)
	}
	stop = func() {
		if err := run("pg_ctl", "stop", "-D", data, "-m", "fast", "-w"); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the test PostgreSQL:", err)
			return // keep the directory: the server may still use it
		}
		_ = os.RemoveAll(dir)
	}

	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		stop()
		return "", nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE registry_test`); err != nil {
		stop()
		return "", nil, err
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/registry_test?sslmode=disable", port), stop, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
