package app

import (
	"context"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// testDeadline bounds every wait in these tests so that a broken server
// fails the test instead of hanging it; no assertion depends on it.
const testDeadline = 60 * time.Second

// newTestLogger logs JSON at debug level to a buffer the test can search
// (and to the test output, shown on failure or with -v).
func newTestLogger(t *testing.T) (*slog.Logger, *sandboxtest.LogBuffer) {
	t.Helper()
	buf := &sandboxtest.LogBuffer{Mirror: t.Output()}
	return NewLogger(buf, slog.LevelDebug), buf
}

// startUpstream serves the emulator (sandboxtest: the real handler behind
// a loopback HTTP server, the committed test keys) with its state in dir
// (persisted, so a restart on the same dir keeps its keys). wrap, when not
// nil, wraps the handler (to gate or observe requests).
func startUpstream(t testing.TB, dir string, log *slog.Logger, wrap func(http.Handler) http.Handler) *sandboxtest.Sandbox {
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
	// skipDataVerification is sandboxd's --verify-data=false: for
	// benchmarks whose two halves need not pay the emulator's RSA
	// decryption.
	skipDataVerification bool
}

// startUpstreamWith is startUpstream with every option.
func startUpstreamWith(t testing.TB, o upstreamOptions) *sandboxtest.Sandbox {
	t.Helper()
	return sandboxtest.Start(t, sandboxtest.Options{
		Config: sandbox.Config{
			DataDir:              o.dir,
			Misbehave:            o.misbehave,
			Logger:               o.log.With("component", "test-upstream"),
			SkipDataVerification: o.skipDataVerification,
		},
		Wrap: o.wrap,
		TLS:  o.tls,
	})
}

// remoteConfig is a development Config that points recoveryd at u through
// the ordinary --upstream-url/--upstream-token-file/--jwks-url path.
func remoteConfig(t testing.TB, u *sandboxtest.Sandbox, dataDir string) Config {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "upstream-token")
	if err := os.WriteFile(tokenFile, []byte(sandbox.DevPartnerToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir = dataDir
	cfg.UpstreamURL = u.HTTP.URL
	cfg.UpstreamTokenFile = tokenFile
	cfg.JWKSURL = u.HTTP.URL + sandbox.PathJWKS
	if u.HTTP.TLS != nil {
		// httptest's certificate is self-signed: trust it as a private CA.
		cfg.UpstreamCAFile = filepath.Join(t.TempDir(), "upstream-ca.pem")
		ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: u.HTTP.Certificate().Raw})
		if err := os.WriteFile(cfg.UpstreamCAFile, ca, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg.ShutdownTimeout = 10 * time.Second
	// An ephemeral admin port: tests run side by side.
	cfg.AdminListen = "127.0.0.1:0"
	return cfg
}

// testServer is recoveryd started by Run on an in-memory listener, with a
// client of each of its services.
type testServer struct {
	*TestServer
	conn   *grpc.ClientConn
	client recoveryv1.RecoveryServiceClient
	health healthpb.HealthClient
	// expectCut: the test shuts down with calls in flight on purpose, so
	// Run's ErrCallsCut is no failure.
	expectCut bool
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
	s := &testServer{
		TestServer: ts,
		conn:       ts.Conn,
		client:     recoveryv1.NewRecoveryServiceClient(ts.Conn),
		health:     healthpb.NewHealthClient(ts.Conn),
	}
	t.Cleanup(func() {
		if err := ts.Stop(); err != nil && !(s.expectCut && errors.Is(err, ErrCallsCut)) {
			t.Errorf("run returned %v", err)
		}
	})
	return s
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

// serveInMemory serves srv over bufconn until the test ends and returns a
// client of it.
func serveInMemory(t *testing.T, srv *grpc.Server) recoveryv1.RecoveryServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///in-memory",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return recoveryv1.NewRecoveryServiceClient(conn)
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

// await waits for ch, failing the test after testDeadline.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testDeadline):
		t.Fatalf("gave up waiting for %s", what)
	}
}
