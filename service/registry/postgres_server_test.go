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
	"runtime"
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
func postgresURL(t testing.TB) string {
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

// debianInitdb is where Debian's postgresql packages install initdb.
const debianInitdb = "/usr/lib/postgresql/*/bin/initdb"

// postgresBinDir finds the newest PostgreSQL server installation whose
// initdb matches pattern (debianInitdb).
func postgresBinDir(pattern string) (string, error) {
	matches, _ := filepath.Glob(pattern)
	if len(matches) == 0 {
		return "", errors.New("initdb not found (" + pattern + "): " +
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

// startPostgres runs initdb in a temporary directory, then the server on a
// free loopback port, tuned for a fast start rather than durability, and
// creates the database the tests use. PostgreSQL refuses to run as root, so
// as root both run as the postgres system user.
//
// The server is the test binary's own child with a parent-death signal, so
// a test binary killed by a timeout or a panic does not leave it running;
// a normal end stops it with pg_ctl stop -m fast.
func startPostgres() (dbURL string, stop func(), err error) {
	bin, err := postgresBinDir(debianInitdb)
	if err != nil {
		return "", nil, err
	}
	parent := os.TempDir()
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return "", nil, fmt.Errorf("running as root needs the postgres system user (apt-get install postgresql creates it): %w", err)
		}
		uid, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			return "", nil, fmt.Errorf("postgres user's uid %q: %w", u.Uid, err)
		}
		gid, err := strconv.ParseUint(u.Gid, 10, 32)
		if err != nil {
			return "", nil, fmt.Errorf("postgres user's gid %q: %w", u.Gid, err)
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The postgres user must be able to reach the directory.
		if fi, err := os.Stat(parent); err != nil || fi.Mode().Perm()&0o001 == 0 {
			parent = "/tmp"
		}
	}
	dir, err := os.MkdirTemp(parent, "registry-postgres-")
	if err != nil {
		return "", nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return "", nil, err
		}
	}
	command := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...) //nolint:noctx // the server outlives every test; pg_ctl stop or Pdeathsig ends it
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		return cmd
	}
	run := func(name string, args ...string) error {
		out, err := command(name, args...).CombinedOutput()
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
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", nil, err
	}
	defer logFile.Close()
	server := command("postgres", "-D", data, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-k", dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB", "-c", "max_connections=200")
	server.Stdout, server.Stderr = logFile, logFile
	// SIGINT is PostgreSQL's fast shutdown.
	server.SysProcAttr.Pdeathsig = syscall.SIGINT

	// NOTE: the parent-death signal follows the thread that started the
	// child, so that thread is kept, locked, until the server has stopped.
	started := make(chan error)
	release := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := server.Start()
		started <- err
		if err == nil {
			<-release
		}
	}()
	if err := <-started; err != nil {
		return "", nil, fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{}) // closed when the server has exited
	go func() {
		_ = server.Wait()
		close(exited)
	}()

	stop = func() {
		defer close(release)
		if err := run("pg_ctl", "stop", "-D", data, "-m", "fast", "-w"); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the test PostgreSQL:", err)
			_ = server.Process.Signal(syscall.SIGQUIT) // immediate shutdown
		}
		select {
		case <-exited:
			_ = os.RemoveAll(dir)
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "the test PostgreSQL did not exit; leaving", dir)
		}
	}
	serverLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", port)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := connectWhenReady(ctx, admin, exited)
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("the test PostgreSQL did not accept connections: %w\nserver log:\n%s", err, serverLog())
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE registry_test`); err != nil {
		stop()
		return "", nil, err
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/registry_test?sslmode=disable", port), stop, nil
}

// connectWhenReady retries connecting while the server starts up, giving up
// when ctx ends or the server exits.
func connectWhenReady(ctx context.Context, url string, exited <-chan struct{}) (*pgx.Conn, error) {
	for {
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			return conn, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("the server exited: %w", err)
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // a port probe, closed at once: nothing to cancel
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
