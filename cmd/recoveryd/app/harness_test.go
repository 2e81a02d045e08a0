package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// testDeadline bounds every wait in these tests so that a broken server
// fails the test instead of hanging it; no assertion depends on it.
const testDeadline = 60 * time.Second

// logBuffer collects log output for assertions, safe for concurrent writers,
// and mirrors it to the test's output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	return b.out.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newTestLogger logs JSON at debug level to a buffer the test can search
// (and to the test output, shown on failure or with -v).
func newTestLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	t.Helper()
	buf := &logBuffer{out: t.Output()}
	return NewLogger(buf, slog.LevelDebug), buf
}

// testUpstream is the real sandbox handler behind a real loopback HTTP
// server, the way a remote Partner Key Service is reached.
type testUpstream struct {
	emulator *sandbox.Server
	http     *httptest.Server
	dir      string
}

// startUpstream serves the emulator with its state in dir (persisted, so a
// restart on the same dir keeps its keys), handing out the committed test
// keys. wrap, when not nil, wraps the handler (to gate or observe requests).
func startUpstream(t testing.TB, dir string, log *slog.Logger, wrap func(http.Handler) http.Handler) *testUpstream {
	t.Helper()
	return startUpstreamWith(t, upstreamOptions{dir: dir, log: log, wrap: wrap})
}

// upstreamOptions are startUpstreamWith's choices beyond startUpstream's.
type upstreamOptions struct {
	dir  string
	log  *slog.Logger
	wrap func(http.Handler) http.Handler
	// misbehave is a sandbox.Misbehave* mode, or "".
	misbehave string
	// tls serves https:// with httptest's self-signed certificate;
	// remoteConfig then trusts it through --upstream-ca-file.
	tls bool
}

// startUpstreamWith is startUpstream with every option.
func startUpstreamWith(t testing.TB, o upstreamOptions) *testUpstream {
	t.Helper()
	emulator, err := sandbox.New(sandbox.Config{
		DataDir:   o.dir,
		KeySource: testkeys.NewRSASource(),
		Misbehave: o.misbehave,
		Logger:    o.log.With("component", "test-upstream"),
	})
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	var h http.Handler = emulator
	if o.wrap != nil {
		h = o.wrap(emulator)
	}
	srv := httptest.NewUnstartedServer(h)
	if o.tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	u := &testUpstream{emulator: emulator, http: srv, dir: o.dir}
	t.Cleanup(u.close)
	return u
}

// close stops the upstream; safe to call twice.
func (u *testUpstream) close() {
	u.http.Close()
	_ = u.emulator.Close()
}

// remoteConfig is a development Config that points recoveryd at u through
// the ordinary --upstream-url/--upstream-token-file/--jwks-url path.
func remoteConfig(t testing.TB, u *testUpstream, dataDir string) Config {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "upstream-token")
	if err := os.WriteFile(tokenFile, []byte(sandbox.DevPartnerToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir = dataDir
	cfg.UpstreamURL = u.http.URL
	cfg.UpstreamTokenFile = tokenFile
	cfg.JWKSURL = u.http.URL + sandbox.PathJWKS
	if u.http.TLS != nil {
		// httptest's certificate is self-signed: trust it as a private CA.
		cfg.UpstreamCAFile = filepath.Join(t.TempDir(), "upstream-ca.pem")
		ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: u.http.Certificate().Raw})
		if err := os.WriteFile(cfg.UpstreamCAFile, ca, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg.ShutdownTimeout = 10 * time.Second
	// An ephemeral admin port: tests run side by side.
	cfg.AdminListen = "127.0.0.1:0"
	return cfg
}

// sandboxKeys lists the keys the upstream assigned (its inspection API).
func (u *testUpstream) sandboxKeys(t *testing.T) []struct {
	KeyID          string `json:"key_id"`
	UserIdentifier string `json:"user_identifier"`
	CustomerID     string `json:"customer_id"`
} {
	t.Helper()
	var body struct {
		Keys []struct {
			KeyID          string `json:"key_id"`
			UserIdentifier string `json:"user_identifier"`
			CustomerID     string `json:"customer_id"`
		} `json:"keys"`
	}
	u.getJSON(t, http.MethodGet, sandbox.PathInspectKeys, &body)
	return body.Keys
}

// sandboxBackup is one backup as the upstream stored it.
type sandboxBackup struct {
	BackupID   string `json:"backup_id"`
	BackupType string `json:"backup_type"`
	KeyID      string `json:"key_id"`
	SizeBytes  int64  `json:"size_bytes"`
	SHA256     string `json:"sha256"`
	Checksum   string `json:"checksum"`
}

// sandboxBackups lists what the upstream stored.
func (u *testUpstream) sandboxBackups(t *testing.T) []sandboxBackup {
	t.Helper()
	var body struct {
		Backups []sandboxBackup `json:"backups"`
	}
	u.getJSON(t, http.MethodGet, sandbox.PathInspectBackups, &body)
	return body.Backups
}

// recoverPlaintext runs the emulator's recovery of a data backup.
func (u *testUpstream) recoverPlaintext(t *testing.T, backupID string) []byte {
	t.Helper()
	var body struct {
		Plaintext string `json:"plaintext"`
	}
	u.getJSON(t, http.MethodPost, sandbox.PathInspectBackups+"/"+backupID+"/recover", &body)
	out, err := base64.StdEncoding.DecodeString(body.Plaintext)
	if err != nil {
		t.Fatalf("recovered plaintext is not base64: %v", err)
	}
	return out
}

// fileContent is a file backup's bytes as the upstream stored them.
func (u *testUpstream) fileContent(t *testing.T, backupID string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u.http.URL+sandbox.PathInspectBackups+"/"+backupID+"/content", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := u.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET content of %s: %d %v", backupID, resp.StatusCode, err)
	}
	return data
}

func (u *testUpstream) getJSON(t *testing.T, method, path string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u.http.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := u.http.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, body)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s %s: decoding: %v", method, path, err)
	}
}

// testServer is recoveryd started by Run on an in-memory listener, with a
// client of each of its services.
type testServer struct {
	*TestServer
	conn   *grpc.ClientConn
	client recoveryv1.RecoveryServiceClient
	health healthpb.HealthClient
}

// startServer runs recoveryd (Run: the real builder, the real lifecycle)
// on opts.Listener, or over bufconn when it is nil, and returns once it can
// be dialled; it does not wait for readiness (see waitServing). The server
// is stopped at cleanup.
func startServer(t testing.TB, cfg Config, log *slog.Logger, opts Options) *testServer {
	t.Helper()
	return startServerCreds(t, cfg, log, opts, nil)
}

// startServerCreds is startServer with the client's transport credentials
// (TLS, for a server configured with --tls-cert).
func startServerCreds(t testing.TB, cfg Config, log *slog.Logger, opts Options, creds credentials.TransportCredentials) *testServer {
	t.Helper()
	if opts.Stderr == nil {
		// The development banner goes with the test's output.
		opts.Stderr = t.Output()
	}
	ts, err := StartTestServer(cfg, log, opts, creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ts.Stop(); err != nil {
			t.Errorf("run returned %v", err)
		}
	})
	return &testServer{
		TestServer: ts,
		conn:       ts.Conn,
		client:     recoveryv1.NewRecoveryServiceClient(ts.Conn),
		health:     healthpb.NewHealthClient(ts.Conn),
	}
}

// stop shuts the server down and returns Run's error; safe to call twice.
func (s *testServer) stop() error { return s.Stop() }

// startReady starts the server and waits until health says SERVING.
func startReady(t testing.TB, cfg Config, log *slog.Logger, opts Options) *testServer {
	t.Helper()
	s := startServer(t, cfg, log, opts)
	s.waitServing(t)
	return s
}

// waitServing waits until the RecoveryService is SERVING, failing the test
// with Run's error if the server stopped instead.
func (s *testServer) waitServing(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	if err := s.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
}

// testCtx is a context bounded by testDeadline.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}

// errorInfo returns the ErrorInfo and BadRequest field names of err.
func errorDetails(err error) (reason string, fields []string) {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return reason, fields
}

// wantStatus fails unless err has code, the ErrorInfo reason and (when
// given) exactly the BadRequest fields.
func wantStatus(t *testing.T, err error, code codes.Code, reason string, fields ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("call succeeded; want %s %s", code, reason)
	}
	if got := status.Code(err); got != code {
		t.Fatalf("code = %s, want %s (%v)", got, code, err)
	}
	gotReason, gotFields := errorDetails(err)
	if gotReason != reason {
		t.Errorf("ErrorInfo reason = %q, want %q (%v)", gotReason, reason, err)
	}
	// NOTE: one field may break several rules (an empty user_identifier is
	// both too short and off-pattern); compare the distinct names in order.
	gotFields = slices.Compact(gotFields)
	if fields != nil && strings.Join(gotFields, ",") != strings.Join(fields, ",") {
		t.Errorf("BadRequest fields = %q, want %q", gotFields, fields)
	}
}

// uploadObserver watches the upstream's secure/file requests: started is
// closed once the upstream has read minBytes of the first upload's body,
// finished once the upstream has answered it (or seen it aborted).
type uploadObserver struct {
	minBytes int64
	started  chan struct{}
	finished chan struct{}
	once     sync.Once
}

func newUploadObserver(minBytes int64) *uploadObserver {
	return &uploadObserver{minBytes: minBytes, started: make(chan struct{}), finished: make(chan struct{})}
}

// wrap is a startUpstream wrapper.
func (o *uploadObserver) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := false
		if r.URL.Path == sandbox.PathSecureFile {
			o.once.Do(func() { first = true })
		}
		if !first {
			h.ServeHTTP(w, r)
			return
		}
		defer close(o.finished)
		r.Body = &countingBody{ReadCloser: r.Body, min: o.minBytes, reached: o.started}
		h.ServeHTTP(w, r)
	})
}

// countingBody closes reached once min bytes have been read.
type countingBody struct {
	io.ReadCloser
	min     int64
	n       int64
	reached chan struct{}
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.n < b.min && b.n+int64(n) >= b.min {
		close(b.reached)
	}
	b.n += int64(n)
	return n, err
}

// await waits for ch, failing the test after testDeadline.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testDeadline):
		t.Fatalf("gave up waiting for %s", what)
	}
}
