package app

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/walletprovider/recoveryservice/service"
)

// maxQueuedPerCaller bounds the calls one caller may have waiting for
// admission (fairGate): beyond it a call is refused at once, so a flood
// holds no more than this many requests in memory per caller.
const maxQueuedPerCaller = 1024

// fairGate admits at most limit unary calls at once (--max-active-calls)
// and queues the rest, one first-come-first-served queue per caller; a
// slot that frees goes to the callers with waiting calls in turn. A caller
// flooding the service therefore waits mostly behind itself: another
// caller's call is admitted after at most one call of each busy caller,
// not after the flood's whole backlog. Every stage past admission (the
// registry's group commit, the audit writer, the cores) serves calls
// first come, first served, so without the gate a call waits behind every
// call in flight; with it, behind at most limit of them.
//
// NOTE: hand-written: golang.org/x/sync/semaphore queues all waiters in one
// FIFO (no per-caller turns), go-grpc-middleware has no fair queuing, and
// Kubernetes' API priority and fairness is a whole subsystem to import for
// this one queue.
type fairGate struct {
	limit int

	mu     sync.Mutex
	active int
	// queues holds only callers with waiting calls; turn lists them in the
	// order their next call is admitted.
	queues map[string][]*admission
	turn   []string
}

// admission is one waiting call; ready is closed when it is admitted
// (granted set under the gate's mutex first).
type admission struct {
	ready   chan struct{}
	granted bool
}

func newFairGate(limit int) *fairGate {
	return &fairGate{limit: limit, queues: map[string][]*admission{}}
}

// acquire admits ctx's call for caller key, waiting for its turn while
// limit calls are active. It returns the RATE_LIMITED status (limit
// "queued_calls") when key already has maxQueuedPerCaller calls waiting,
// and the context's status when ctx ends first. On success release must
// be called when the call ends.
func (g *fairGate) acquire(ctx context.Context, key string) (release func(), err error) {
	g.mu.Lock()
	if g.active < g.limit && len(g.turn) == 0 {
		g.active++
		g.mu.Unlock()
		return g.release, nil
	}
	q, waiting := g.queues[key]
	if len(q) >= maxQueuedPerCaller {
		g.mu.Unlock()
		return nil, service.RateLimitedStatus(service.LimitQueuedCalls, concurrencyRetryAfter)
	}
	a := &admission{ready: make(chan struct{})}
	g.queues[key] = append(q, a)
	if !waiting {
		g.turn = append(g.turn, key)
	}
	g.mu.Unlock()

	select {
	case <-a.ready:
		return g.release, nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	if a.granted {
		// Admitted while ctx ended: pass the slot on.
		g.mu.Unlock()
		g.release()
	} else {
		g.withdraw(key, a)
		g.mu.Unlock()
	}
	return nil, status.FromContextError(ctx.Err()).Err()
}

// withdraw removes the waiting call a from key's queue. g.mu must be held.
func (g *fairGate) withdraw(key string, a *admission) {
	q := g.queues[key]
	for i, w := range q {
		if w == a {
			q = append(q[:i], q[i+1:]...)
			break
		}
	}
	if len(q) > 0 {
		g.queues[key] = q
		return
	}
	delete(g.queues, key)
	for i, k := range g.turn {
		if k == key {
			g.turn = append(g.turn[:i], g.turn[i+1:]...)
			break
		}
	}
}

// release ends an admitted call: its slot goes to the first waiting call
// of the caller whose turn it is (who then goes to the back of the turn),
// or is freed when nobody waits.
func (g *fairGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.turn) == 0 {
		g.active--
		return
	}
	key := g.turn[0]
	g.turn = g.turn[1:]
	q := g.queues[key]
	next := q[0]
	if len(q) > 1 {
		g.queues[key] = q[1:]
		g.turn = append(g.turn, key)
	} else {
		delete(g.queues, key)
	}
	next.granted = true
	close(next.ready)
}

// waiting is the number of calls waiting for admission.
func (g *fairGate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, q := range g.queues {
		n += len(q)
	}
	return n
}

// admissionUnary admits each unary call through g (nil: no gate); health is
// exempt. Streams are not gated: SecureFile streams have their own cap
// (--max-concurrent-files), and a stream held for minutes must not hold a
// slot that short calls need.
func admissionUnary(g *fairGate, defaults overloadLimits) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if g == nil || exemptFromOverload(ctx) {
			return handler(ctx, req)
		}
		key, _ := identifyCaller(ctx, defaults)
		release, err := g.acquire(ctx, key)
		if err != nil {
			return nil, err
		}
		defer release()
		return handler(ctx, req)
	}
}

// passStream is the stream half of a position that only gates unary calls.
func passStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, ss)
}
