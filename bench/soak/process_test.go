package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// processDeadline bounds every wait on a process (its start, its exit), so
// a hung process fails the run instead of hanging it; no figure or
// invariant depends on it.
const processDeadline = 2 * time.Minute

// binaries are recoveryd and sandboxd built once from this tree.
type binaries struct{ recoveryd, sandboxd string }

// buildBinaries builds both commands into a temporary directory.
func buildBinaries(t *testing.T) binaries {
	t.Helper()
	dir := t.TempDir()
	b := binaries{recoveryd: filepath.Join(dir, "recoveryd"), sandboxd: filepath.Join(dir, "sandboxd")}
	for out, pkg := range map[string]string{b.recoveryd: "../../cmd/recoveryd", b.sandboxd: "../../cmd/sandboxd"} {
		cmd := exec.CommandContext(t.Context(), "go", "build", "-o", out, pkg)
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, msg)
		}
	}
	return b
}

// process is a started child: the soak ends only the processes it
// started, by their own PID, at cleanup if they still run.
type process struct {
	name     string
	cmd      *exec.Cmd
	logPath  string
	exited   chan struct{}
	exitCode int // -1 when killed by a signal; set before exited closes
}

// startProcess runs bin with args, its stderr to logPath, and kills it at
// cleanup if it is still running.
func startProcess(t *testing.T, name, bin, logPath string, args []string, stdout io.Writer) *process {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &process{name: name, logPath: logPath, exited: make(chan struct{}),
		// Not the test's context: the soak ends the process itself, by
		// signal, and watches how it exits.
		cmd: exec.CommandContext(context.Background(), bin, args...)}
	// Only PATH: no RECOVERY_* of the caller's environment leaks in.
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	p.cmd.Stderr = logFile
	p.cmd.Stdout = stdout
	if err := p.cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		err := p.cmd.Wait()
		_ = logFile.Close()
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
	return p
}

// signal sends sig to the process.
func (p *process) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %s to %s: %v", sig, p.name, err)
	}
}

// wait returns the exit code once the process has exited.
func (p *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.exitCode
	case <-time.After(processDeadline):
		t.Fatalf("%s has not exited within %s; log: %s", p.name, processDeadline, p.logPath)
		return 0
	}
}

// logLines returns the process's log lines containing every one of parts.
func (p *process) logLines(t *testing.T, parts ...string) []string {
	t.Helper()
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		match := true
		for _, part := range parts {
			match = match && strings.Contains(line, part)
		}
		if match {
			out = append(out, line)
		}
	}
	return out
}

// waitLog waits until the process logs a line containing every one of
// parts, and returns it.
func (p *process) waitLog(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(processDeadline)
	for {
		if lines := p.logLines(t, parts...); len(lines) > 0 {
			return lines[0]
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited (%d) before logging %q; log: %s", p.name, p.exitCode, parts, p.logPath)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %s; log: %s", p.name, parts, processDeadline, p.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sandboxd is a running emulator.
type sandboxd struct {
	*process
	url string
}

// startSandboxd runs sandboxd on a free loopback port with the committed
// test keys, and extra (faults, latency) flags.
func startSandboxd(t *testing.T, bin, dir string, extra []string) *sandboxd {
	t.Helper()
	pr, pw := io.Pipe()
	args := append([]string{"--listen", "127.0.0.1:0", "--test-keys", "--log-level", "warn"}, extra...)
	p := startProcess(t, "sandboxd", bin, filepath.Join(dir, "sandboxd.log"), args, pw)
	go func() {
		<-p.exited
		_ = pw.Close()
	}()
	lines := bufio.NewReader(pr)
	line, err := lines.ReadString('\n')
	const prefix = "sandboxd listening on "
	if err != nil || !strings.HasPrefix(line, prefix) {
		t.Fatalf("sandboxd's first line %q (%v); log: %s", line, err, p.logPath)
	}
	go func() { _, _ = io.Copy(io.Discard, lines) }()
	return &sandboxd{process: p, url: strings.TrimSpace(strings.TrimPrefix(line, prefix))}
}

// getJSON reads one inspection endpoint into v.
func (s *sandboxd) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func (s *sandboxd) keys(t *testing.T) []sandbox.InspectedKey {
	var body sandbox.InspectedKeys
	s.getJSON(t, sandbox.PathInspectKeys, &body)
	return body.Keys
}

func (s *sandboxd) backups(t *testing.T) []sandbox.InspectedBackup {
	var body sandbox.InspectedBackups
	s.getJSON(t, sandbox.PathInspectBackups, &body)
	return body.Backups
}

func (s *sandboxd) faults(t *testing.T) sandbox.FaultCounts {
	var body sandbox.FaultCounts
	s.getJSON(t, sandbox.PathInspectFaults, &body)
	return body
}

// settledFaults waits until the emulator's request count has not moved
// for a while (the requests of a process just killed have all been
// counted), and returns the counts. The wait is a settling time, not an
// assertion: no result depends on how long it took.
func (s *sandboxd) settledFaults(t *testing.T) sandbox.FaultCounts {
	t.Helper()
	const still = 5 // readings 200 ms apart with the same count
	deadline := time.Now().Add(processDeadline)
	last, same := s.faults(t), 0
	for same < still && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		now := s.faults(t)
		if now.Requests == last.Requests {
			same++
		} else {
			same = 0
		}
		last = now
	}
	return last
}

// recoveryd is one run of recoveryd (a restart is another).
type recoveryd struct {
	*process
	admin  string
	client recoveryv1.RecoveryServiceClient
	conn   *grpc.ClientConn
}

// recoverydSetup is what every run of one phase's recoveryd shares.
type recoverydSetup struct {
	bin     string
	dir     string // the run's own files: logs, token, data dir
	listen  string // a fixed loopback address, so callers reconnect after a restart
	up      *sandboxd
	dbFile  string // --database-url-file; "" for SQLite under the data dir
	args    []string
	started int
}

// start runs recoveryd and returns once its health is SERVING.
func (s *recoverydSetup) start(t *testing.T) *recoveryd {
	t.Helper()
	token := filepath.Join(s.dir, "upstream-token")
	if err := os.WriteFile(token, []byte(sandbox.DevPartnerToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--listen", s.listen, "--admin-listen", "127.0.0.1:0", "--data-dir", filepath.Join(s.dir, "data"),
		"--upstream-url", s.up.url, "--upstream-token-file", token,
		"--jwks-url", s.up.url + sandbox.PathJWKS,
	}
	if s.dbFile != "" {
		args = append(args, "--database-url-file", s.dbFile)
	}
	s.started++
	p := startProcess(t, "recoveryd", s.bin, filepath.Join(s.dir, fmt.Sprintf("recoveryd-%d.log", s.started)), append(args, s.args...), nil)
	r := &recoveryd{process: p}
	var line struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(p.waitLog(t, `"msg":"serving admin endpoints"`)), &line); err != nil || line.Address == "" {
		t.Fatalf("no address in recoveryd's admin line: %v", err)
	}
	r.admin = line.Address
	p.waitLog(t, `"msg":"serving gRPC"`)
	conn, err := grpc.NewClient("passthrough:///"+s.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	r.conn, r.client = conn, recoveryv1.NewRecoveryServiceClient(conn)
	r.waitServing(t)
	return r
}

// waitServing watches health until the RecoveryService is SERVING.
func (r *recoveryd) waitServing(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), processDeadline)
	defer cancel()
	w, err := healthpb.NewHealthClient(r.conn).Watch(ctx,
		&healthpb.HealthCheckRequest{Service: recoveryv1.RecoveryService_ServiceDesc.ServiceName}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("watching recoveryd's health: %v", err)
	}
	for {
		resp, err := w.Recv()
		if err != nil {
			t.Fatalf("recoveryd never became SERVING: %v; log: %s", err, r.logPath)
		}
		if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
	}
}

// metrics are the counters of one recoveryd's /metrics this run reads,
// each summed over the labels not named.
type metrics struct {
	// upstreamRequests by HTTP status ("error": no response arrived).
	upstreamRequests map[string]float64
	// retries by why ("ambiguous", "nothing_done").
	retries map[string]float64
	// duplicates: calls that succeeded on a retry after an attempt that
	// may have stored too.
	duplicates float64
}

// scrape reads recoveryd's /metrics.
func (r *recoveryd) scrape(t *testing.T) metrics {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+r.admin+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	m := metrics{
		upstreamRequests: sumBy(families["recovery_upstream_requests_total"], "status"),
		retries:          sumBy(families["recovery_upstream_retries_total"], "after"),
	}
	for _, v := range sumBy(families["recovery_upstream_possible_duplicates_total"], "") {
		m.duplicates += v
	}
	return m
}

// sumBy sums a counter family's samples by one label's value.
func sumBy(f *dto.MetricFamily, label string) map[string]float64 {
	out := map[string]float64{}
	for _, sample := range f.GetMetric() {
		key := ""
		for _, l := range sample.GetLabel() {
			if l.GetName() == label {
				key = l.GetValue()
			}
		}
		out[key] += sample.GetCounter().GetValue()
	}
	return out
}

// freeLoopback returns a loopback address nobody listens on now.
func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// envDuration, envInt and envString read a knob, with a default.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a count", name, v)
	}
	return n
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
