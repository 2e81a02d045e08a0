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

	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/auth"
)

// overloadLimits are recoveryd's default overload limits (the --rate-limit
// and --rate-burst flags); a caller's entry in the callers file may override
// them (auth.Limits). The zero value limits nothing.
type overloadLimits struct {
	// rate is the token bucket's refill in calls per second; 0 is off.
	rate float64
	// burst is the bucket's size; at least 1 when rate is above 0.
	burst int
}

// overloadFromConfig is the overload part of cfg.
func overloadFromConfig(cfg Config) overloadLimits {
	return overloadLimits{rate: cfg.RateLimit, burst: cfg.RateBurst}
}

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
	key, limits := b.identify(ctx)
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

// identify names ctx's bucket and its limits: the caller's own, else the
// defaults.
func (b *callerBuckets) identify(ctx context.Context) (string, overloadLimits) {
	key, limits := "peer:"+peerHost(ctx), b.defaults
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
