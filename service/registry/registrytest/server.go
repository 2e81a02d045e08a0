package registrytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// debianInitdb is where Debian's postgresql packages install initdb.
const debianInitdb = "/usr/lib/postgresql/*/bin/initdb"

// testDatabase is the database the started server's tests make their
// schemas in.
const testDatabase = "registrytest"

// Bounds of starting and stopping the server: generous, since the machine
// may be busy; only a broken server reaches them.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
)

// binDir finds the newest PostgreSQL server installation whose initdb
// matches pattern (debianInitdb).
func binDir(pattern string) (string, error) {
	matches, _ := filepath.Glob(pattern)
	if len(matches) == 0 {
		return "", errors.New("initdb not found (" + pattern + "): " +
			"install the server with `apt-get install postgresql` (make system-deps does), " +
			"or point " + URLEnv + " at a server")
	}
	version := func(p string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return v
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return filepath.Dir(matches[0]), nil
}

// postgresCredential is who the server runs as: the postgres system user
// when this process is root (PostgreSQL refuses to run as root), else nil
// (this process's own user).
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil // nil: run as this process's own user
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres system user (apt-get install postgresql creates it): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user's uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user's gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// startServer runs initdb in a temporary directory, then the server on a
// free loopback port, tuned for a fast start rather than durability, and
// creates the database the tests use.
//
// The server is the test binary's own child with a parent-death signal, so
// a test binary killed by a timeout or a panic does not leave it running;
// a normal end (StopAfter) stops it with pg_ctl stop -m fast.
func startServer() (dbURL string, stop func(), err error) {
	bin, err := binDir(debianInitdb)
	if err != nil {
		return "", nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return "", nil, err
	}
	parent := os.TempDir()
	if cred != nil {
		// The postgres user must be able to reach the directory.
		if fi, err := os.Stat(parent); err != nil || fi.Mode().Perm()&0o001 == 0 {
			parent = "/tmp"
		}
	}
	dir, err := os.MkdirTemp(parent, "registrytest-postgres-")
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
		cmd := exec.Command(filepath.Join(bin, name), args...) //nolint:noctx,gosec // Debian's server binaries with arguments composed here; the server outlives every test, pg_ctl stop or Pdeathsig ends it
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
	logFile, err := os.Create(logPath) //nolint:gosec // a path in the temporary directory made above
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
		case <-time.After(stopTimeout):
			fmt.Fprintln(os.Stderr, "the test PostgreSQL did not exit; leaving", dir)
		}
	}
	serverLog := func() string { b, _ := os.ReadFile(logPath); return string(b) } //nolint:gosec // the server log written above

	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", port)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := connectWhenReady(ctx, admin, exited)
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("the test PostgreSQL did not accept connections: %w\nserver log:\n%s", err, serverLog())
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+testDatabase); err != nil {
		stop()
		return "", nil, err
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", port, testDatabase), stop, nil
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

// freePort asks the kernel for a loopback port nobody is listening on.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // a port probe, closed at once: nothing to cancel
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
