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
