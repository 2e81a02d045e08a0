package service_test

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/walletprovider/recoveryservice/cmd/recoveryd/app"
	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// testCallTimeout is the service's CallTimeout in these tests; the
// reservation lease the tests reserve with follows from it.
const testCallTimeout = 10 * time.Second

// fixtureOptions vary the real parts a fixture starts.
type fixtureOptions struct {
	// misbehave is the sandbox's misbehaviour mode.
	misbehave string
	// maxFileBytes is the service's SecureFile limit (0: default).
	maxFileBytes int64
	// sandboxMaxFileBytes is the upstream's file limit (0: default).
	sandboxMaxFileBytes int64
	// rateLimit is the sandbox's per-token rate (0: off).
	rateLimit float64
	// token is the bearer token the adapter sends (default: the dev
	// partner token).
	token string
	// wrap, when set, sits between the adapter and the sandbox: it stands
	// in for the network between them (a lost response, a slow link).
	wrap func(next http.Handler) http.Handler
	// store, when set, is a registry shared with another fixture (a
	// second replica, or the same registry after a fault is fixed).
	store *registry.Store
	// upstreamURL, when set, is an upstream shared with another fixture
	// (or one the test serves itself); its inspection API is read there.
	upstreamURL string
	// callers, when set, turns caller authentication on as an operator
	// does: recoveryd gets a callers file listing them, and calls carry a
	// token (withToken). Without callers recoveryd runs as in development,
	// authentication off: calls carry no caller.
	callers []testCaller
	// signingKeys are the sandbox's enclave signing keys (default: one
	// generated key).
	signingKeys []sandbox.SigningKey
	// jwksNow is the JWKS fetcher's clock (default: time.Now).
	jwksNow func() time.Time
	// assignmentWait is how long an AssignKey waits for a concurrent
	// request holding its pair (0: the service's default).
	assignmentWait time.Duration
	// faults, faultPaths and faultSeed are the sandbox's fault injection
	// (sandbox.Config.Faults, FaultPaths, FaultSeed).
	faults     map[string]float64
	faultPaths []string
	faultSeed  int64
	// streamIdleTimeout is recoveryd's --stream-idle-timeout (0: default).
	streamIdleTimeout time.Duration
	// reconcileInterval is the service's reconciler interval (0: no
	// reconciler, unknown outcomes stay ASSIGNMENT_OUTCOME_UNKNOWN; else
	// they are ASSIGNMENT_BEING_RESOLVED). The fixture runs no reconciler
	// loop: the tests drive its passes (resolver).
	reconcileInterval time.Duration
}

// testCaller is one entry of a fixture's callers file.
type testCaller struct {
	name  string
	token string
	orgs  []string
}

// fixture is recoveryd as app.Run builds it (the real interceptor chain,
// codec, validation and recovery, the real adapter talking HTTP to the real
// sandbox, the real JWKS fetcher and a real SQLite registry), served in
// memory for one test.
type fixture struct {
	t      *testing.T
	client recoveryv1.RecoveryServiceClient
	store  *registry.Store
	// upstreamURL is the sandbox the adapter talks to; inspect reads what
	// it holds.
	upstreamURL string
	inspect     *sandboxtest.Client
	// logs is recoveryd's log, JSON lines at every level.
	logs *sandboxtest.LogBuffer
	// spans records every span of the run.
	spans *tracetest.SpanRecorder
	// adminAddr serves /metrics.
	adminAddr string
	// finished receives the full method name of every RPC whose handler
	// has returned, so a test can wait for work the caller abandoned.
	finished chan string
	// dataDir is recoveryd's --data-dir (the spool is under it).
	dataDir string
}

// testRequestHashKey keys the fixture's idempotency request hashes, so a
// test can compute one (service.DataRequestHash).
var testRequestHashKey = []byte("fixture request-hash key, 32+ bytes long")

func newFixture(t *testing.T, opts fixtureOptions) *fixture {
	t.Helper()
	upstreamURL := opts.upstreamURL
	if upstreamURL == "" {
		sb := sandboxtest.Start(t, sandboxtest.Options{
			Config: sandbox.Config{
				SigningKeys:  opts.signingKeys,
				Misbehave:    opts.misbehave,
				MaxFileBytes: opts.sandboxMaxFileBytes,
				RateLimit:    opts.rateLimit,
				RateBurst:    1,
				Faults:       opts.faults,
				FaultPaths:   opts.faultPaths,
				FaultSeed:    opts.faultSeed,
			},
			Wrap: opts.wrap,
		})
		upstreamURL = sb.URL
	}

	store := opts.store
	if store == nil {
		var err error
		store, err = registry.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "registry.db"), registry.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatalf("registry.OpenSQLite: %v", err)
		}
		t.Cleanup(func() { _ = store.Close() })
	}

	cfg := app.DefaultConfig()
	cfg.DataDir = t.TempDir()
	// NOTE: port 0, so fixtures running side by side never collide.
	cfg.AdminListen = "127.0.0.1:0"
	cfg.UpstreamURL = upstreamURL
	cfg.UpstreamTokenFile = writePrivateFile(t, "upstream-token", []byte(cmp.Or(opts.token, sandbox.DevPartnerToken)))
	cfg.JWKSURL = upstreamURL + jwksPath
	if opts.maxFileBytes > 0 {
		cfg.MaxFileBytes = opts.maxFileBytes
	}
	if opts.streamIdleTimeout > 0 {
		cfg.StreamIdleTimeout = opts.streamIdleTimeout
	}
	if len(opts.callers) > 0 {
		cfg.CallerTokensFile = writeCallersFile(t, opts.callers)
	}

	f := &fixture{
		t: t, store: store, upstreamURL: upstreamURL,
		inspect:  sandboxtest.NewClient(upstreamURL, nil),
		logs:     &sandboxtest.LogBuffer{Mirror: t.Output()},
		spans:    tracetest.NewSpanRecorder(),
		finished: make(chan string, 1024),
		dataDir:  cfg.DataDir,
	}
	srv, err := app.StartTestServer(cfg, app.NewLogger(f.logs, slog.LevelDebug), app.Options{
		Registry:      store,
		SpanProcessor: f.spans,
		JWKSNow:       opts.jwksNow,
		Stderr:        io.Discard,
		Service: func(c *service.Config) {
			c.CallTimeout = testCallTimeout
			c.AssignmentWait = opts.assignmentWait
			c.RequestHashKey = testRequestHashKey
			c.ReconcileInterval = opts.reconcileInterval
		},
		CallFinished: func(method string) { f.finished <- method },
		// The reconciler tests drive passes themselves (resolver).
		NoReconcilerLoop: true,
	}, nil)
	if err != nil {
		t.Fatalf("app.StartTestServer: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("recoveryd stopped with: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := srv.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	f.client = recoveryv1.NewRecoveryServiceClient(srv.Conn)
	f.adminAddr = srv.AdminAddr
	return f
}

// writePrivateFile writes data to a file only its owner may read, as the
// loaders of secrets demand, and returns its path.
func writePrivateFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeCallersFile writes a callers file listing callers with the SHA-256
// of their tokens, and returns its path.
func writeCallersFile(t *testing.T, callers []testCaller) string {
	t.Helper()
	type entry struct {
		Name          string   `json:"name"`
		TokenSHA256   string   `json:"token_sha256"`
		Organisations []string `json:"organisations"`
	}
	var file struct {
		Callers []entry `json:"callers"`
	}
	for _, c := range callers {
		sum := sha256.Sum256([]byte(c.token))
		file.Callers = append(file.Callers, entry{c.name, hex.EncodeToString(sum[:]), c.orgs})
	}
	data, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	return writePrivateFile(t, "callers.json", data)
}

// withToken returns ctx whose RPCs authenticate with the bearer token.
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// waitFinished blocks until the handler of method has returned n times.
func (f *fixture) waitFinished(method string, n int) {
	f.t.Helper()
	timeout := time.After(30 * time.Second)
	for n > 0 {
		select {
		case m := <-f.finished:
			if strings.HasSuffix(m, "/"+method) {
				n--
			}
		case <-timeout:
			f.t.Fatalf("handler of %s did not return", method)
		}
	}
}

// pairState is the registry's state of req's (user, organisation) pair,
// read by reserving it as the flow would; a free pair is released again.
func (f *fixture) pairState(t *testing.T, req *recoveryv1.AssignKeyRequest) registry.AssignmentState {
	t.Helper()
	res, err := f.store.ReserveAssignment(t.Context(), service.TermsFromRequest(req, ""), service.Lease(testCallTimeout))
	if err != nil {
		t.Fatal(err)
	}
	if res.State == registry.AssignmentReserved {
		if err := f.store.ReleaseAssignment(t.Context(), res.Token); err != nil {
			t.Fatal(err)
		}
	}
	return res.State
}

// inProcessServer is a service.Server wired to the fixture's upstream and
// registry but outside recoveryd, for the one test that must see the very
// request a handler was given; every other test calls through f.client.
func (f *fixture) inProcessServer(t *testing.T) *service.Server {
	t.Helper()
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	client, err := upstream.NewClient(upstream.Config{BaseURL: f.upstreamURL, Token: sandbox.DevPartnerToken, Transport: transport, AllowHTTP: true})
	if err != nil {
		t.Fatalf("upstream.NewClient: %v", err)
	}
	keys, err := upstream.NewJWKSFetcher(upstream.JWKSConfig{URL: f.upstreamURL + jwksPath, Transport: transport, AllowHTTP: true})
	if err != nil {
		t.Fatalf("upstream.NewJWKSFetcher: %v", err)
	}
	return service.New(service.Config{Upstream: client, Keys: keys, Registry: f.store, Logger: slog.New(slog.DiscardHandler)})
}

// assignDirectly assigns a key at the sandbox without going through the
// service, as another system sharing the upstream account would.
func (f *fixture) assignDirectly(user, customerID string) {
	f.t.Helper()
	body := `{"user_identifier":"` + user + `","key_type":"rsa4096","key_environment":"HOT",` +
		`"organisation":{"customer_id":"` + customerID + `","customer_name":"Elsewhere Ltd"},` +
		`"package":{"package_id":"pkg-1","package_name":"Gold"}}`
	req, err := http.NewRequestWithContext(f.t.Context(), http.MethodPost, f.upstreamURL+sandbox.PathAssignKey, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sandbox.DevPartnerToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("direct assign: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("direct assign: status %d", resp.StatusCode)
	}
}

// registryBackups lists every backup the registry recorded.
func (f *fixture) registryBackups() []registry.Backup {
	f.t.Helper()
	backups, _, err := f.store.ListBackups(f.t.Context(), registry.BackupFilter{}, registry.Page{Size: 500})
	if err != nil {
		f.t.Fatalf("registry ListBackups: %v", err)
	}
	return backups
}

// assignRequest is a valid AssignKey request for user at customer.
func assignRequest(user, customer string) *recoveryv1.AssignKeyRequest {
	return &recoveryv1.AssignKeyRequest{
		UserIdentifier: user,
		KeyEnvironment: recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT,
		Organisation:   &recoveryv1.Organisation{CustomerId: customer, CustomerName: "Acme Wallets"},
		Package:        &recoveryv1.Package{PackageId: "pkg-1", PackageName: "Gold"},
	}
}

// mustAssign assigns a key through the service.
func (f *fixture) mustAssign(user, customer string) *recoveryv1.RecoveryKey {
	f.t.Helper()
	resp, err := f.client.AssignKey(f.t.Context(), assignRequest(user, customer))
	if err != nil {
		f.t.Fatalf("AssignKey(%s, %s): %v", user, customer, err)
	}
	return resp.GetKey()
}

// wantStatus checks err is a status with code and ErrorInfo reason in our
// domain, and returns its details. The reason is compared by the contract's
// rule (the enum value's name without ERROR_REASON_), worked out here rather
// than by the code under test.
func wantStatus(t *testing.T, err error, code codes.Code, reason recoveryv1.ErrorReason) statusDetails {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a gRPC status", err)
	}
	if st.Code() != code {
		t.Fatalf("code = %s (%q), want %s", st.Code(), st.Message(), code)
	}
	d := detailsOf(st)
	if d.info == nil {
		t.Fatalf("status %s %q has no ErrorInfo", st.Code(), st.Message())
	}
	if want := strings.TrimPrefix(reason.String(), "ERROR_REASON_"); d.info.GetReason() != want || d.info.GetDomain() != service.ErrorDomain {
		t.Fatalf("ErrorInfo = %s/%s, want %s/%s", d.info.GetDomain(), d.info.GetReason(), service.ErrorDomain, want)
	}
	return d
}

type statusDetails struct {
	message    string
	info       *errdetails.ErrorInfo
	badRequest *errdetails.BadRequest
	retry      *errdetails.RetryInfo
}

func detailsOf(st *status.Status) statusDetails {
	d := statusDetails{message: st.Message()}
	for _, detail := range st.Details() {
		switch v := detail.(type) {
		case *errdetails.ErrorInfo:
			d.info = v
		case *errdetails.BadRequest:
			d.badRequest = v
		case *errdetails.RetryInfo:
			d.retry = v
		}
	}
	return d
}

// fields lists the BadRequest field paths.
func (d statusDetails) fields() []string {
	var out []string
	for _, v := range d.badRequest.GetFieldViolations() {
		out = append(out, v.GetField())
	}
	slices.Sort(out)
	return out
}

// gate holds requests matching a path at the upstream until released,
// telling the test when one has arrived: a deterministic stand-in for a
// slow upstream.
type gate struct {
	path    string
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate(path string) *gate {
	return &gate{path: path, arrived: make(chan struct{}, 16), release: make(chan struct{})}
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == g.path {
			g.arrived <- struct{}{}
			<-g.release
		}
		next.ServeHTTP(w, r)
	})
}

// loseResponse lets the upstream act on requests to path and then answers
// 502 instead of its response: the lost-response case.
func loseResponse(path string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path {
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(httptest.NewRecorder(), r)
			http.Error(w, "bad gateway", http.StatusBadGateway)
		})
	}
}

// loseFirstAnswer lets the upstream act on the first request to path, then
// closes the connection with no answer (the emulator's reset-after, on the
// first attempt only); later requests pass. calls counts the requests to
// path.
func loseFirstAnswer(path string, calls *atomic.Int32) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path {
				next.ServeHTTP(w, r)
				return
			}
			if calls.Add(1) > 1 {
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(httptest.NewRecorder(), r)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(http.ErrAbortHandler)
			}
			_ = conn.Close()
		})
	}
}

// failFirst answers the first request to path with status, without letting
// the upstream act; later requests pass. calls counts the requests to path.
func failFirst(path string, status int, calls *atomic.Int32) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == path && calls.Add(1) == 1 {
				http.Error(w, `{"error":"service_unavailable","message":"injected"}`, status)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
