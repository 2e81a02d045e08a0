package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// processDeadline bounds every wait on a recoveryd process (its start, its
// exit), so a hung process fails the test instead of hanging it; no
// assertion depends on it.
const processDeadline = 2 * time.Minute

// built is recoveryd compiled once per test binary (go build), for the
// tests that run it as a process: signals and exit codes are the
// process's, not Run's.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// recoverydBinary builds ./cmd/recoveryd on first use and returns its path.
func recoverydBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "recoveryd-test-bin-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "recoveryd")
		cmd := exec.CommandContext(context.Background(), "go", "build", "-o", built.path, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build ./cmd/recoveryd: %w\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// removeBuilt deletes the built binary (TestMain, after the tests).
func removeBuilt() {
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
}

// recoverydOptions say how startRecoveryd runs recoveryd.
type recoverydOptions struct {
	// upstream is the emulator recoveryd talks to (--upstream-url,
	// --jwks-url, its development partner token).
	upstream *sandboxtest.Sandbox
	// dataDir is --data-dir; "" is a new temporary directory. A restart
	// passes the previous process's.
	dataDir string
	// args are further flags (--shutdown-timeout, ...).
	args []string
}

// recoverydProcess is a running recoveryd.
type recoverydProcess struct {
	cmd     *exec.Cmd
	addr    string
	dataDir string
	// logs holds its stderr (JSON lines), mirrored to the test's output.
	logs   *sandboxtest.LogBuffer
	conn   *grpc.ClientConn
	client recoveryv1.RecoveryServiceClient
	health healthpb.HealthClient

	exited   chan struct{}
	exitCode int // set before exited is closed
}

// startRecoveryd runs the recoveryd binary against o.upstream on a free
// loopback port, and returns once health says SERVING. The process is
// killed at cleanup if it still runs.
func startRecoveryd(t *testing.T, o recoverydOptions) *recoverydProcess {
	t.Helper()
	bin := recoverydBinary(t)
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	token := filepath.Join(t.TempDir(), "upstream-token")
	if err := os.WriteFile(token, []byte(sandbox.DevPartnerToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--listen", "127.0.0.1:0", "--admin-listen=", "--data-dir", o.dataDir,
		"--upstream-url", o.upstream.URL, "--upstream-token-file", token,
		"--jwks-url", o.upstream.URL + sandbox.PathJWKS,
	}, o.args...)
	p := &recoverydProcess{
		// Not the test's context: the test ends the process itself, by
		// signal, and watches how it exits.
		cmd:     exec.CommandContext(context.Background(), bin, args...),
		dataDir: o.dataDir,
		logs:    &sandboxtest.LogBuffer{Mirror: t.Output()},
		exited:  make(chan struct{}),
	}
	// Only PATH: no RECOVERY_* of the test's environment leaks in.
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting recoveryd: %v", err)
	}
	go func() {
		err := p.cmd.Wait()
		p.exitCode = 0
		if exit, ok := errors.AsType[*exec.ExitError](err); ok {
			p.exitCode = exit.ExitCode()
		} else if err != nil {
			p.exitCode = -1
		}
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})

	var line struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(p.logs.WaitFor(t, `"msg":"serving gRPC"`)), &line); err != nil || line.Address == "" {
		t.Fatalf("no address in recoveryd's serving line: %v", err)
	}
	p.addr = line.Address
	p.conn = dialRecoveryd(t, p.addr)
	p.client = recoveryv1.NewRecoveryServiceClient(p.conn)
	p.health = healthpb.NewHealthClient(p.conn)
	p.waitServing(t)
	return p
}

// dialRecoveryd is a plaintext client of addr, closed at cleanup.
func dialRecoveryd(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// waitServing watches health until the RecoveryService is SERVING.
func (p *recoverydProcess) waitServing(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), processDeadline)
	defer cancel()
	w, err := p.health.Watch(ctx, &healthpb.HealthCheckRequest{Service: recoveryv1.RecoveryService_ServiceDesc.ServiceName}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("watching recoveryd's health: %v", err)
	}
	for {
		resp, err := w.Recv()
		if err != nil {
			t.Fatalf("recoveryd never became SERVING: %v\nlog:\n%s", err, p.logs.String())
		}
		if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
	}
}

// signal sends sig to the process.
func (p *recoverydProcess) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %s to recoveryd: %v", sig, err)
	}
}

// wait returns the process's exit code once it has exited (-1 when it was
// killed by a signal), failing the test if it has not within
// processDeadline.
func (p *recoverydProcess) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.exitCode
	case <-time.After(processDeadline):
		t.Fatalf("recoveryd has not exited within %s; log:\n%s", processDeadline, p.logs.String())
		return 0
	}
}

// partnerArrivals counts the partner requests (assignments and stores)
// that reach the emulator, so a test acts once its calls are in flight
// upstream. Its Wrap goes in sandboxtest.Options.Wrap.
type partnerArrivals struct {
	arrived chan string
	ended   chan string
	// inFlight counts the partner requests the emulator is serving.
	inFlight atomic.Int64
}

func newPartnerArrivals() *partnerArrivals {
	return &partnerArrivals{arrived: make(chan string, 4096), ended: make(chan string, 4096)}
}

// Wrap reports each partner POST as it arrives and once it is over.
func (a *partnerArrivals) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		partner := r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/partner/")
		if partner {
			a.inFlight.Add(1)
			a.arrived <- r.URL.Path
			defer func() {
				a.inFlight.Add(-1)
				a.ended <- r.URL.Path
			}()
		}
		next.ServeHTTP(w, r)
	})
}

// waitIdle waits until the emulator serves no partner request, so what
// it holds no longer changes.
func (a *partnerArrivals) waitIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(processDeadline)
	for a.inFlight.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the emulator still serves %d partner requests after %s", a.inFlight.Load(), processDeadline)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// awaitN waits for n receipts on ch.
func awaitN(t *testing.T, ch <-chan string, n int, what string) {
	t.Helper()
	deadline := time.After(processDeadline)
	for i := range n {
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("only %d of %d %s within %s", i, n, what, processDeadline)
		}
	}
}
