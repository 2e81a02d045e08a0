package app

import (
	"context"
	"net"
	"strings"
	"sync"
	"time"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/auth"
)

// overloadLimits are recoveryd's default overload limits (the --rate-limit,
// --rate-burst, --max-concurrent-calls, --max-concurrent-files and
// --max-active-calls flags); a
// caller's entry in the callers file may override the per-caller ones
// (auth.Limits). The zero value limits nothing.
type overloadLimits struct {
	// rate is the token bucket's refill in calls per second; 0 is off.
	rate float64
	// burst is the bucket's size; at least 1 when rate is above 0.
	burst int
	// concurrentCalls caps one caller's calls in flight; 0 is off.
	concurrentCalls int
	// concurrentFiles caps the SecureFile streams in flight, all callers
	// together; 0 is off. Never overridden per caller.
	concurrentFiles int
	// activeCalls caps the unary calls past admission, all callers
	// together, the others waiting their caller's turn (fairGate); 0 is
	// off. Never overridden per caller.
	activeCalls int
}

// overloadFromConfig is the overload part of cfg.
func overloadFromConfig(cfg Config) overloadLimits {
	return overloadLimits{rate: cfg.RateLimit, burst: cfg.RateBurst,
		concurrentCalls: cfg.MaxConcurrentCalls, concurrentFiles: cfg.MaxConcurrentFiles, activeCalls: cfg.MaxActiveCalls}
}

// concurrencyRetryAfter is the RetryInfo of a concurrency refusal: unlike a
// token bucket, nothing says when a call in flight will end, so it is a
// short, fixed back-off.
const concurrencyRetryAfter = time.Second

// minBucketSweep is the number of buckets below which callerBuckets never
// sweeps: a few thousand idle buckets cost less than sweeping for them.
const minBucketSweep = 1024

// callerBuckets is the ratelimit.Limiter of the rate-limit position: one
// token bucket per authenticated caller, or per peer address (its host,
// since a client can open connections from any port) when the call has no
// caller — development without caller authentication.
type callerBuckets struct {
	defaults overloadLimits

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	// sweepAt is the bucket count at which full buckets are dropped.
	sweepAt int
}

func newCallerBuckets(defaults overloadLimits) *callerBuckets {
	return &callerBuckets{defaults: defaults, buckets: map[string]*rate.Limiter{}, sweepAt: minBucketSweep}
}

// Limit takes one token from the bucket of ctx's caller, or returns the
// RATE_LIMITED status with the wait until the next token as its RetryInfo.
// A refused call takes no token, so a caller retrying too early does not
// push its own next slot further away.
func (b *callerBuckets) Limit(ctx context.Context) error {
	if exemptFromOverload(ctx) {
		return nil
	}
	key, limits := identifyCaller(ctx, b.defaults)
	if limits.rate <= 0 {
		return nil
	}
	now := time.Now()
	r := b.bucket(key, limits).ReserveN(now, 1)
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		return service.RateLimitedStatus(service.LimitRate, delay)
	}
	return nil
}

// identifyCaller names ctx's caller (its peer host when the call has no
// authenticated caller) and its limits: defaults, with the caller's own
// from the callers file in their place.
func identifyCaller(ctx context.Context, defaults overloadLimits) (string, overloadLimits) {
	key, limits := "peer:"+peerHost(ctx), defaults
	caller, ok := auth.CallerFrom(ctx)
	if !ok {
		return key, limits
	}
	key = "caller:" + caller.Name
	if l := caller.Limits; l.RateLimit != nil {
		limits.rate = *l.RateLimit
		if l.RateBurst != nil {
			limits.burst = *l.RateBurst
		}
	}
	if l := caller.Limits; l.MaxConcurrentCalls != nil {
		limits.concurrentCalls = *l.MaxConcurrentCalls
	}
	return key, limits
}

// bucket is key's token bucket, made on first use. A callers file reloaded
// with new limits changes an existing bucket in place, keeping its tokens.
func (b *callerBuckets) bucket(key string, limits overloadLimits) *rate.Limiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	lim, ok := b.buckets[key]
	if !ok {
		if len(b.buckets) >= b.sweepAt {
			b.sweep()
		}
		lim = rate.NewLimiter(rate.Limit(limits.rate), limits.burst)
		b.buckets[key] = lim
		return lim
	}
	if lim.Limit() != rate.Limit(limits.rate) {
		lim.SetLimit(rate.Limit(limits.rate))
	}
	if lim.Burst() != limits.burst {
		lim.SetBurst(limits.burst)
	}
	return lim
}

// sweep drops every full bucket: a full bucket behaves exactly like the new
// one made on the next call, so forgetting it changes no answer, and the
// map stays as large as the callers (or peers) active recently. Called with
// mu held.
func (b *callerBuckets) sweep() {
	now := time.Now()
	for key, lim := range b.buckets {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(b.buckets, key)
		}
	}
	b.sweepAt = max(minBucketSweep, 2*len(b.buckets))
}

// exemptFromOverload reports whether ctx's call is never limited: health
// must answer probes truthfully however busy the callers are.
func exemptFromOverload(ctx context.Context) bool {
	method, _ := grpc.Method(ctx)
	return strings.HasPrefix(method, "/"+healthpb.Health_ServiceDesc.ServiceName+"/")
}

// peerHost is the host of ctx's peer address ("" when unknown).
func peerHost(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	addr := p.Addr.String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// refusalSlot carries a limiter's own refusal past go-grpc-middleware's
// ratelimit interceptor, which answers with a bare RESOURCE_EXHAUSTED whose
// message embeds the limiter's error text: callers need the RATE_LIMITED
// ErrorInfo and the RetryInfo, and the message must stay the fixed one.
type refusalSlot struct{ err error }

// refusalSlotKey is the context key of a call's *refusalSlot.
type refusalSlotKey struct{}

// slottedLimiter records the refusal it returns in the call's slot.
type slottedLimiter struct{ ratelimit.Limiter }

// Limit calls the wrapped limiter and keeps its refusal for the caller.
func (l slottedLimiter) Limit(ctx context.Context) error {
	err := l.Limiter.Limit(ctx)
	if slot, ok := ctx.Value(refusalSlotKey{}).(*refusalSlot); ok && err != nil {
		slot.err = err
	}
	return err
}

// rateLimitUnary is go-grpc-middleware's ratelimit interceptor over
// limiter, answering the limiter's own status when it refuses.
func rateLimitUnary(limiter ratelimit.Limiter) grpc.UnaryServerInterceptor {
	inner := ratelimit.UnaryServerInterceptor(slottedLimiter{limiter})
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		slot := &refusalSlot{}
		resp, err := inner(context.WithValue(ctx, refusalSlotKey{}, slot), req, info, handler)
		if slot.err != nil {
			return nil, slot.err
		}
		return resp, err
	}
}

// rateLimitStream is rateLimitUnary for streams.
func rateLimitStream(limiter ratelimit.Limiter) grpc.StreamServerInterceptor {
	inner := ratelimit.StreamServerInterceptor(slottedLimiter{limiter})
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		slot := &refusalSlot{}
		wrapped := middleware.WrapServerStream(ss)
		wrapped.WrappedContext = context.WithValue(ss.Context(), refusalSlotKey{}, slot)
		err := inner(srv, wrapped, info, handler)
		if slot.err != nil {
			return slot.err
		}
		return err
	}
}

// inFlight counts calls in flight per caller and SecureFile streams in
// flight overall, for the concurrency position.
type inFlight struct {
	defaults overloadLimits

	mu sync.Mutex
	// calls holds only callers with calls in flight, so it is as large as
	// the callers active right now.
	calls map[string]int
	files int
}

func newInFlight(defaults overloadLimits) *inFlight {
	return &inFlight{defaults: defaults, calls: map[string]int{}}
}

// acquire takes a slot for ctx's call (and a file slot for a SecureFile
// stream), or returns the RATE_LIMITED status naming the cap it hit. On
// success, release must be called when the call ends.
func (f *inFlight) acquire(ctx context.Context, fullMethod string) (release func(), err error) {
	if exemptFromOverload(ctx) {
		return func() {}, nil
	}
	key, limits := identifyCaller(ctx, f.defaults)
	file := fullMethod == recoveryv1.RecoveryService_SecureFile_FullMethodName && limits.concurrentFiles > 0
	f.mu.Lock()
	defer f.mu.Unlock()
	if limits.concurrentCalls > 0 && f.calls[key] >= limits.concurrentCalls {
		return nil, service.RateLimitedStatus(service.LimitConcurrentCalls, concurrencyRetryAfter)
	}
	if file && f.files >= limits.concurrentFiles {
		return nil, service.RateLimitedStatus(service.LimitConcurrentFiles, concurrencyRetryAfter)
	}
	// NOTE: calls are counted even when the caller has no cap now, so that
	// a cap added by a callers-file reload sees the calls already running.
	f.calls[key]++
	if file {
		f.files++
	}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.calls[key]--; f.calls[key] == 0 {
			delete(f.calls, key)
		}
		if file {
			f.files--
		}
	}, nil
}

// concurrencyUnary holds a slot of f for the call's whole handler.
func concurrencyUnary(f *inFlight) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		release, err := f.acquire(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		defer release()
		return handler(ctx, req)
	}
}

// concurrencyStream holds a slot of f until the stream's handler returns.
func concurrencyStream(f *inFlight) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		release, err := f.acquire(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		defer release()
		return handler(srv, ss)
	}
}
