package app

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
)

// overloadKeyID is a well-formed key_id: a call that passes the overload
// positions reaches panickingService, which answers a bare Internal.
const overloadKeyID = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"

// getKey makes one GetKey call to panickingService; nil means it passed
// every overload limit (the handler's Internal), else the refusal.
func getKey(ctx context.Context, c recoveryv1.RecoveryServiceClient) error {
	_, err := c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: overloadKeyID})
	if status.Code(err) == codes.Internal {
		return nil
	}
	return err
}

// wantRateLimited checks that err is the overload refusal for limit: the
// RATE_LIMITED reason, the limit named, a RetryInfo to back off by, and the
// fixed message (not the middleware's, which would quote the limiter).
func wantRateLimited(t *testing.T, err error, limit string) {
	t.Helper()
	wantStatus(t, err, codes.ResourceExhausted, "RATE_LIMITED")
	st := status.Convert(err)
	if strings.Contains(st.Message(), "grpc_ratelimit") || strings.Contains(st.Message(), "/recovery.v1.") {
		t.Errorf("message %q is the middleware's, not the service's fixed one", st.Message())
	}
	var info *errdetails.ErrorInfo
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		switch v := d.(type) {
		case *errdetails.ErrorInfo:
			info = v
		case *errdetails.RetryInfo:
			retry = v
		}
	}
	if got := info.GetMetadata()["limit"]; got != limit {
		t.Errorf("ErrorInfo limit = %q, want %q", got, limit)
	}
	if retry.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("RetryInfo = %v, want a positive delay", retry)
	}
}

// TestRateLimitIsPerCaller: each authenticated caller has its own bucket,
// so one caller over its rate does not refuse another; a caller's entry in
// the callers file overrides the default, both ways.
func TestRateLimitIsPerCaller(t *testing.T) {
	unlimited := 0.0
	perDay, one := 1.0/(24*3600), 1
	unlimitedAPI := testCaller{name: "unlimited-api", token: "tok-unlimited-api-0b7e5d21c9a4f3e8", orgs: []string{"*"},
		limits: callerLimitsJSON{RateLimit: &unlimited}}
	// strictAPI's own limit is one call a day; the default would not
	// refuse it (limits below allow 1000 calls per second).
	strictAPI := testCaller{name: "strict-api", token: "tok-strict-api-7c1d9e4a2b6f8035", orgs: []string{"*"},
		limits: callerLimitsJSON{RateLimit: &perDay, RateBurst: &one}}

	t.Run("default", func(t *testing.T) {
		c, _ := chainServerLimited(t, oneCallPerMonth, walletAPI, otherOrgAPI, unlimitedAPI)
		ctx := testCtx(t)
		if err := getKey(withToken(ctx, walletAPI.token), c); err != nil {
			t.Fatalf("wallet-api's first call: %v", err)
		}
		wantRateLimited(t, getKey(withToken(ctx, walletAPI.token), c), service.LimitRate)
		if err := getKey(withToken(ctx, otherOrgAPI.token), c); err != nil {
			t.Errorf("other-org-api was refused because wallet-api spent its own bucket: %v", err)
		}
		for i := range 5 {
			if err := getKey(withToken(ctx, unlimitedAPI.token), c); err != nil {
				t.Fatalf("unlimited-api (rate_limit 0 in the callers file) call %d: %v", i+1, err)
			}
		}
	})
	t.Run("override stricter than the default", func(t *testing.T) {
		c, _ := chainServerLimited(t, overloadLimits{rate: 1000, burst: 1000}, walletAPI, strictAPI)
		ctx := testCtx(t)
		if err := getKey(withToken(ctx, strictAPI.token), c); err != nil {
			t.Fatalf("strict-api's first call: %v", err)
		}
		wantRateLimited(t, getKey(withToken(ctx, strictAPI.token), c), service.LimitRate)
		for i := range 5 {
			if err := getKey(withToken(ctx, walletAPI.token), c); err != nil {
				t.Fatalf("wallet-api (default limits) call %d: %v", i+1, err)
			}
		}
	})
}

// TestRateLimitIsPerPeerWithoutCallerAuth: without caller authentication
// the bucket is the peer host's, so a second client address is not refused
// for the first one's calls, and health is never limited.
func TestRateLimitIsPerPeerWithoutCallerAuth(t *testing.T) {
	log, _ := newTestLogger(t)
	srv, err := newGRPCServer(log, panickingService{}, newHealthService(), service.StatusFromValidation, serverSecurity{}, oneCallPerMonth, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	// dialFrom connects from the loopback address local (Linux routes all
	// of 127.0.0.0/8 to lo, so 127.0.0.2 is a second peer on one machine).
	dialFrom := func(local string) *grpc.ClientConn {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	first, second := dialFrom("127.0.0.1"), dialFrom("127.0.0.2")
	ctx := testCtx(t)

	if err := getKey(ctx, recoveryv1.NewRecoveryServiceClient(first)); err != nil {
		t.Fatalf("127.0.0.1's first call: %v", err)
	}
	wantRateLimited(t, getKey(ctx, recoveryv1.NewRecoveryServiceClient(first)), service.LimitRate)
	// A new connection from the same host is the same peer: reconnecting
	// does not buy a new bucket.
	wantRateLimited(t, getKey(ctx, recoveryv1.NewRecoveryServiceClient(dialFrom("127.0.0.1"))), service.LimitRate)
	if err := getKey(ctx, recoveryv1.NewRecoveryServiceClient(second)); err != nil {
		t.Errorf("127.0.0.2 was refused for 127.0.0.1's calls: %v", err)
	}
	for i := range 3 {
		if _, err := healthpb.NewHealthClient(first).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("health check %d from a rate-limited peer: %v", i+1, err)
		}
	}
}

// TestCallerBucketsSweepOnlyFullBuckets: forgetting a bucket must never
// hand a caller fresh tokens, so the sweep drops full buckets only.
func TestCallerBucketsSweepOnlyFullBuckets(t *testing.T) {
	b := newCallerBuckets(oneCallPerMonth)
	spent := b.bucket("caller:spent", oneCallPerMonth)
	if !spent.Allow() {
		t.Fatal("a new bucket refused its first call")
	}
	for i := range minBucketSweep {
		b.bucket("peer:full-"+string(rune('a'+i%26))+strings.Repeat("x", i/26), oneCallPerMonth)
	}
	b.mu.Lock()
	b.sweep()
	n := len(b.buckets)
	b.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d buckets after the sweep, want only the spent one", n)
	}
	if b.bucket("caller:spent", oneCallPerMonth).Allow() {
		t.Error("the spent bucket was forgotten: its caller got a fresh token")
	}
}

// blockingService holds every GetKey and SecureFile call in its handler
// until release is closed, so a test can fill the concurrency caps.
type blockingService struct {
	recoveryv1.UnimplementedRecoveryServiceServer
	entered chan struct{}
	release chan struct{}
}

func newBlockingService() *blockingService {
	return &blockingService{entered: make(chan struct{}, 64), release: make(chan struct{})}
}

func (s *blockingService) GetKey(ctx context.Context, _ *recoveryv1.GetKeyRequest) (*recoveryv1.GetKeyResponse, error) {
	return &recoveryv1.GetKeyResponse{}, s.hold(ctx)
}

func (s *blockingService) SecureFile(stream grpc.ClientStreamingServer[recoveryv1.SecureFileRequest, recoveryv1.SecureFileResponse]) error {
	if err := s.hold(stream.Context()); err != nil {
		return err
	}
	return stream.SendAndClose(&recoveryv1.SecureFileResponse{})
}

// hold signals entry and waits for release (or the call's end).
func (s *blockingService) hold(ctx context.Context) error {
	s.entered <- struct{}{}
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startHeld starts call in the background and waits until its handler is
// running, so it holds its slots; the returned channel yields its error.
func startHeld(t *testing.T, svc *blockingService, call func() error) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case <-svc.entered:
	case err := <-done:
		t.Fatalf("the call ended before reaching the handler: %v", err)
	case <-testCtx(t).Done():
		t.Fatal("the call never reached the handler")
	}
	return done
}

// openFile starts a SecureFile stream and ends it after its header; the
// stream reaches the handler (which holds it) before any message.
func openFile(ctx context.Context, c recoveryv1.RecoveryServiceClient) error {
	stream, err := c.SecureFile(ctx)
	if err != nil {
		return err
	}
	_, err = stream.CloseAndRecv()
	return err
}

// TestConcurrentCallsCapIsPerCaller: a caller at its cap is refused, other
// callers are not, and a finished call gives its slot back.
func TestConcurrentCallsCapIsPerCaller(t *testing.T) {
	svc := newBlockingService()
	c, _ := chainServerFor(t, svc, overloadLimits{concurrentCalls: 2}, walletAPI, otherOrgAPI)
	ctx := testCtx(t)
	wallet, other := withToken(ctx, walletAPI.token), withToken(ctx, otherOrgAPI.token)
	getKey := func(ctx context.Context) func() error {
		return func() error {
			_, err := c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: overloadKeyID})
			return err
		}
	}
	held := []<-chan error{startHeld(t, svc, getKey(wallet)), startHeld(t, svc, getKey(wallet))}
	wantRateLimited(t, getKey(wallet)(), service.LimitConcurrentCalls)
	// A stream counts against the same cap.
	wantRateLimited(t, openFile(wallet, c), service.LimitConcurrentCalls)
	held = append(held, startHeld(t, svc, getKey(other)))

	close(svc.release)
	for _, done := range held {
		if err := <-done; err != nil {
			t.Fatalf("a held call failed: %v", err)
		}
	}
	// Every slot came back: the caller can fill its cap again.
	for i := range 2 {
		if err := getKey(wallet)(); err != nil {
			t.Fatalf("call %d after the held ones ended: %v", i+1, err)
		}
	}
}

// TestConcurrentCallsCapOverriddenPerCaller: a callers-file
// max_concurrent_calls replaces the default for that caller only.
func TestConcurrentCallsCapOverriddenPerCaller(t *testing.T) {
	one := 1
	strictAPI := testCaller{name: "strict-api", token: "tok-strict-api-7c1d9e4a2b6f8035", orgs: []string{"*"},
		limits: callerLimitsJSON{MaxConcurrentCalls: &one}}
	svc := newBlockingService()
	c, _ := chainServerFor(t, svc, overloadLimits{concurrentCalls: 10}, strictAPI)
	ctx := withToken(testCtx(t), strictAPI.token)
	done := startHeld(t, svc, func() error { _, err := c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: overloadKeyID}); return err })
	_, err := c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: overloadKeyID})
	wantRateLimited(t, err, service.LimitConcurrentCalls)
	close(svc.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentFilesCapIsGlobal: the SecureFile cap counts every caller's
// streams together and leaves unary calls alone.
func TestConcurrentFilesCapIsGlobal(t *testing.T) {
	svc := newBlockingService()
	c, _ := chainServerFor(t, svc, overloadLimits{concurrentFiles: 1}, walletAPI, otherOrgAPI)
	ctx := testCtx(t)
	wallet, other := withToken(ctx, walletAPI.token), withToken(ctx, otherOrgAPI.token)
	held := startHeld(t, svc, func() error { return openFile(wallet, c) })
	wantRateLimited(t, openFile(other, c), service.LimitConcurrentFiles)
	unary := startHeld(t, svc, func() error { _, err := c.GetKey(other, &recoveryv1.GetKeyRequest{KeyId: overloadKeyID}); return err })
	close(svc.release)
	for _, done := range []<-chan error{held, unary} {
		if err := <-done; err != nil {
			t.Fatalf("a held call failed: %v", err)
		}
	}
	if err := openFile(other, c); err != nil {
		t.Errorf("a stream after the first ended: %v", err)
	}
}
