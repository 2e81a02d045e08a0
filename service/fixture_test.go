package service

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// testCallerHeader carries a caller name in the tests' gRPC metadata; the
// fixture's interceptor turns it into an auth.Caller allowed for every
// organisation, standing in for recoveryd's authentication interceptor in
// tests that are not about authorization.
const testCallerHeader = "x-test-caller"

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
	// sandbox, when set, is an upstream shared with another fixture.
	sandbox *httptest.Server
	// logger receives the service's log (default: discarded).
	logger *slog.Logger
	// callers, when set, turns caller authentication on as recoveryd does
	// with --caller-tokens-file: a callers file listing them, the real
	// service/auth interceptors, and Config.Authz set to the
	// authenticator's Mode (auth.Enforced). Calls then carry a token
	// (withToken); the x-test-caller header is not honoured.
	callers []testCaller
	// signingKeys are the sandbox's enclave signing keys (default: one
	// generated key).
	signingKeys []sandbox.SigningKey
	// jwksNow is the JWKS fetcher's clock (default: time.Now).
	jwksNow func() time.Time
}

// testCaller is one entry of a fixture's callers file.
type testCaller struct {
	name  string
	token string
	orgs  []string
}

// fixture is the service wired as in production, in memory: a real gRPC
// server over bufconn, the real adapter talking HTTP to the real sandbox,
// the real JWKS fetcher and a real SQLite registry.
type fixture struct {
	t        *testing.T
	client   recoveryv1.RecoveryServiceClient
	server   *Server
	store    *registry.Store
	upstream *httptest.Server
	// finished receives the full method name of every RPC whose handler
	// has returned, so a test can wait for work the caller abandoned.
	finished chan string
}

func newFixture(t *testing.T, opts fixtureOptions) *fixture {
	t.Helper()
	ctx := t.Context()
	quiet := slog.New(slog.DiscardHandler)

	up := opts.sandbox
	if up == nil {
		sbx, err := sandbox.New(sandbox.Config{
			KeySource:    testkeys.NewRSASource(),
			SigningKeys:  opts.signingKeys,
			Misbehave:    opts.misbehave,
			MaxFileBytes: opts.sandboxMaxFileBytes,
			RateLimit:    opts.rateLimit,
			RateBurst:    1,
			Logger:       quiet,
		})
		if err != nil {
			t.Fatalf("sandbox.New: %v", err)
		}
		var h http.Handler = sbx
		if opts.wrap != nil {
			h = opts.wrap(sbx)
		}
		up = httptest.NewServer(h)
		t.Cleanup(func() {
			up.Close()
			_ = sbx.Close()
		})
	}

	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	token := opts.token
	if token == "" {
		token = sandbox.DevPartnerToken
	}
	client, err := upstream.NewClient(upstream.Config{
		BaseURL:   up.URL,
		Token:     token,
		Transport: transport,
		AllowHTTP: true,
	})
	if err != nil {
		t.Fatalf("upstream.NewClient: %v", err)
	}
	keys, err := upstream.NewJWKSFetcher(upstream.JWKSConfig{
		URL:       up.URL + "/.well-known/jwks.json",
		Transport: transport,
		AllowHTTP: true,
		Now:       opts.jwksNow,
	})
	if err != nil {
		t.Fatalf("upstream.NewJWKSFetcher: %v", err)
	}

	store := opts.store
	if store == nil {
		store, err = registry.OpenSQLite(ctx, filepath.Join(t.TempDir(), "registry.db"))
		if err != nil {
			t.Fatalf("registry.OpenSQLite: %v", err)
		}
		t.Cleanup(func() { _ = store.Close() })
	}

	// Without callers the test header stands in for authentication and
	// Authz stays nil (auth.Disabled), as in a recoveryd without a callers
	// file.
	unaryAuth, streamAuth := testHeaderUnary, testHeaderStream
	var authz Authorizer
	if len(opts.callers) > 0 {
		authn, err := auth.New(auth.Config{CallersFile: writeCallersFile(t, opts.callers), Logger: quiet})
		if err != nil {
			t.Fatalf("auth.New: %v", err)
		}
		unaryAuth, streamAuth = authn.UnaryServerInterceptor(), authn.StreamServerInterceptor()
		authz = authn.Mode()
	}

	srv := New(Config{
		Upstream:     client,
		Keys:         keys,
		Registry:     store,
		Authz:        authz,
		MaxFileBytes: opts.maxFileBytes,
		Logger:       cmp.Or(opts.logger, quiet),
		CallTimeout:  10 * time.Second,
	})

	f := &fixture{t: t, server: srv, store: store, upstream: up, finished: make(chan string, 1024)}
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			defer func() { f.finished <- info.FullMethod }()
			return h(ctx, req)
		}, unaryAuth),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			defer func() { f.finished <- info.FullMethod }()
			return h(srv, ss)
		}, streamAuth),
	)
	recoveryv1.RegisterRecoveryServiceServer(gs, srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		gs.Stop()
		<-served
	})
	f.client = recoveryv1.NewRecoveryServiceClient(conn)
	return f
}

// writeCallersFile writes a callers file (private, as the loader demands)
// listing callers with the SHA-256 of their tokens, and returns its path.
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
	path := filepath.Join(t.TempDir(), "callers.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// withToken returns ctx whose RPCs authenticate with the bearer token.
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func testHeaderUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	return h(callerFromMetadata(ctx), req)
}

func testHeaderStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, &callerStream{ServerStream: ss, ctx: callerFromMetadata(ss.Context())})
}

func callerFromMetadata(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	if names := md.Get(testCallerHeader); len(names) > 0 {
		return auth.WithCaller(ctx, auth.Caller{Name: names[0], Organisations: []string{auth.AllOrganisations}})
	}
	return ctx
}

type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callerStream) Context() context.Context { return s.ctx }

// asCaller returns ctx whose RPCs are made as the named caller.
func asCaller(ctx context.Context, name string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, testCallerHeader, name)
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

// sandboxKey and sandboxBackup are entries of the sandbox's inspection
// endpoints: what the upstream really holds.
type sandboxKey struct {
	KeyID          string `json:"key_id"`
	UserIdentifier string `json:"user_identifier"`
	CustomerID     string `json:"customer_id"`
	PackageID      string `json:"package_id"`
	KeyEnvironment string `json:"key_environment"`
	PublicKey      string `json:"public_key"`
}

type sandboxBackup struct {
	BackupID   string `json:"backup_id"`
	BackupType string `json:"backup_type"`
	KeyID      string `json:"key_id"`
	CustomerID string `json:"customer_id"`
	PackageID  string `json:"package_id"`
	SizeBytes  int64  `json:"size_bytes"`
	SHA256     string `json:"sha256"`
	Checksum   string `json:"checksum"`
	Metadata   struct {
		Description      string `json:"description"`
		ContentType      string `json:"content_type"`
		OriginalFilename string `json:"original_filename"`
	} `json:"metadata"`
}

func (f *fixture) sandboxKeys() []sandboxKey {
	var body struct {
		Keys []sandboxKey `json:"keys"`
	}
	f.getJSON("/sandbox/v1/keys", &body)
	return body.Keys
}

func (f *fixture) sandboxBackups() []sandboxBackup {
	var body struct {
		Backups []sandboxBackup `json:"backups"`
	}
	f.getJSON("/sandbox/v1/backups", &body)
	return body.Backups
}

// sandboxContent is the bytes the upstream stored for a backup.
func (f *fixture) sandboxContent(backupID string) []byte {
	f.t.Helper()
	resp, err := f.sandboxDo(http.MethodGet, "/sandbox/v1/backups/"+backupID+"/content")
	if err != nil {
		f.t.Fatalf("GET content: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		f.t.Fatalf("GET content: status %d, %v", resp.StatusCode, err)
	}
	return body
}

// sandboxRecover runs the recovery flow: the enclave decrypts a data backup.
func (f *fixture) sandboxRecover(backupID string) []byte {
	f.t.Helper()
	resp, err := f.sandboxDo(http.MethodPost, "/sandbox/v1/backups/"+backupID+"/recover")
	if err != nil {
		f.t.Fatalf("POST recover: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Plaintext []byte `json:"plaintext"`
	}
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("POST recover: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		f.t.Fatalf("POST recover: %v", err)
	}
	return body.Plaintext
}

// sandboxDo sends a body-less request to the sandbox's inspection API,
// bound to the test's context.
func (f *fixture) sandboxDo(method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(f.t.Context(), method, f.upstream.URL+path, nil)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}

func (f *fixture) getJSON(path string, into any) {
	f.t.Helper()
	resp, err := f.sandboxDo(http.MethodGet, path)
	if err != nil {
		f.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		f.t.Fatalf("GET %s: %v", path, err)
	}
}

// assignDirectly assigns a key at the sandbox without going through the
// service, as another system sharing the upstream account would.
func (f *fixture) assignDirectly(user, customerID string) {
	f.t.Helper()
	body := `{"user_identifier":"` + user + `","key_type":"rsa4096","key_environment":"HOT",` +
		`"organisation":{"customer_id":"` + customerID + `","customer_name":"Elsewhere Ltd"},` +
		`"package":{"package_id":"pkg-1","package_name":"Gold"}}`
	req, err := http.NewRequestWithContext(f.t.Context(), http.MethodPost, f.upstream.URL+"/v1/partner/keys", strings.NewReader(body))
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
	if want := strings.TrimPrefix(reason.String(), "ERROR_REASON_"); d.info.GetReason() != want || d.info.GetDomain() != ErrorDomain {
		t.Fatalf("ErrorInfo = %s/%s, want %s/%s", d.info.GetDomain(), d.info.GetReason(), ErrorDomain, want)
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

// watch reports every request to path that reaches the upstream and the
// status the upstream answered it with (0 when the request was aborted
// before an answer), so a test can wait for an aborted upload to be over
// before asserting that nothing was stored.
type watch struct {
	path    string
	arrived chan struct{}
	ended   chan int
	// readAtLeast and read: read is closed once the upstream has read
	// readAtLeast bytes of a request body (when readAtLeast > 0).
	readAtLeast int64
	read        chan struct{}
}

func newWatch(path string) *watch {
	return &watch{path: path, arrived: make(chan struct{}, 64), ended: make(chan int, 64), read: make(chan struct{})}
}

// countingBody closes read once n bytes of the body have been read.
type countingBody struct {
	io.ReadCloser
	n    int64
	want int64
	read chan struct{}
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	before := b.n
	b.n += int64(n)
	if before < b.want && b.n >= b.want {
		close(b.read)
	}
	return n, err
}

func (w *watch) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != w.path {
			next.ServeHTTP(rw, r)
			return
		}
		w.arrived <- struct{}{}
		if w.readAtLeast > 0 {
			r.Body = &countingBody{ReadCloser: r.Body, want: w.readAtLeast, read: w.read}
		}
		rec := &statusRecorder{ResponseWriter: rw}
		defer func() { w.ended <- rec.status }()
		next.ServeHTTP(rec, r)
	})
}

// nextEnd waits for the next request to path to end and returns its status.
func (w *watch) nextEnd(t *testing.T) int {
	t.Helper()
	select {
	case code := <-w.ended:
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("no request to %s ended", w.path)
		return 0
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
