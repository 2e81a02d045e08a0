package app

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
)

// queueCall starts acquire for key in the background and waits until the
// gate holds it as waiting (so calls queue in the order the test makes
// them); the returned channel yields its release once admitted.
func queueCall(t *testing.T, g *fairGate, ctx context.Context, key string) <-chan func() {
	t.Helper()
	before := g.waiting()
	admitted := make(chan func(), 1)
	go func() {
		release, err := g.acquire(ctx, key)
		if err != nil {
			close(admitted)
			return
		}
		admitted <- release
	}()
	for g.waiting() == before {
		select {
		case <-testCtx(t).Done():
			t.Fatalf("%s's call never queued", key)
		case <-time.After(time.Millisecond):
		}
	}
	return admitted
}

// admittedNow reports whether the call behind c has been admitted, without
// waiting for it.
func admittedNow(c <-chan func()) (func(), bool) {
	select {
	case release, ok := <-c:
		return release, ok
	default:
		return nil, false
	}
}

// TestFairGateAdmitsCallersInTurn: with the gate full of one caller's
// calls and ten more of its calls waiting, another caller's call is
// admitted at the second slot that frees, not after the ten.
func TestFairGateAdmitsCallersInTurn(t *testing.T) {
	g := newFairGate(2)
	ctx := testCtx(t)
	var active []func()
	for range 2 {
		release, err := g.acquire(ctx, "caller:flood")
		if err != nil {
			t.Fatal(err)
		}
		active = append(active, release)
	}
	var flood []<-chan func()
	for range 10 {
		flood = append(flood, queueCall(t, g, ctx, "caller:flood"))
	}
	quiet := queueCall(t, g, ctx, "caller:quiet")

	// First slot: the flood's turn came first (it queued first).
	active[0]()
	release, ok := waitAdmitted(t, flood[0])
	if !ok {
		t.Fatal("the flood's first waiting call was not admitted")
	}
	if _, ok := admittedNow(quiet); ok {
		t.Fatal("the quiet caller was admitted out of turn")
	}
	// Second slot: the quiet caller's turn, ahead of nine waiting calls.
	active[1]()
	if _, ok := waitAdmitted(t, quiet); !ok {
		t.Fatal("the quiet caller's call was not admitted at its turn")
	}
	for i, c := range flood[1:] {
		if _, ok := admittedNow(c); ok {
			t.Fatalf("flood call %d admitted beyond the limit", i+1)
		}
	}
	release()
	if g.waiting() != 8 {
		t.Errorf("%d calls waiting, want 8", g.waiting())
	}
}

// waitAdmitted waits (bounded by the test's context) for the call behind c.
func waitAdmitted(t *testing.T, c <-chan func()) (func(), bool) {
	t.Helper()
	select {
	case release, ok := <-c:
		return release, ok
	case <-testCtx(t).Done():
		return nil, false
	}
}

// TestFairGateWithdrawsEndedCalls: a waiting call whose context ends gets
// its context's status and gives up its place; the slot count is intact,
// so the next call is admitted when a slot frees and the gate ends empty.
func TestFairGateWithdrawsEndedCalls(t *testing.T) {
	g := newFairGate(1)
	ctx := testCtx(t)
	release, err := g.acquire(ctx, "caller:a")
	if err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(ctx)
	errs := make(chan error, 1)
	go func() {
		_, err := g.acquire(gone, "caller:b")
		errs <- err
	}()
	for g.waiting() != 1 {
		select {
		case <-ctx.Done():
			t.Fatal("b's call never queued")
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	if err := <-errs; status.Code(err) != codes.Canceled {
		t.Fatalf("a cancelled waiting call got %v, want CANCELED", err)
	}
	if g.waiting() != 0 {
		t.Fatalf("%d calls waiting after the withdrawal, want 0", g.waiting())
	}
	next := queueCall(t, g, ctx, "caller:c")
	release()
	r, ok := waitAdmitted(t, next)
	if !ok {
		t.Fatal("the next call was not admitted after the slot freed")
	}
	r()
	if g.active != 0 || len(g.turn) != 0 || len(g.queues) != 0 {
		t.Errorf("gate not empty at the end: active %d, turn %v, queues %d", g.active, g.turn, len(g.queues))
	}
}

// TestFairGateBoundsEachQueue: a caller with maxQueuedPerCaller calls
// waiting has its next call refused at once, RATE_LIMITED with the
// "queued_calls" limit; another caller still queues.
func TestFairGateBoundsEachQueue(t *testing.T) {
	g := newFairGate(1)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	release, err := g.acquire(ctx, "caller:a")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	g.mu.Lock()
	for range maxQueuedPerCaller {
		g.queues["caller:a"] = append(g.queues["caller:a"], &admission{ready: make(chan struct{})})
	}
	g.turn = append(g.turn, "caller:a")
	g.mu.Unlock()

	_, err = g.acquire(ctx, "caller:a")
	wantRateLimited(t, err, service.LimitQueuedCalls)
	queueCall(t, g, ctx, "caller:b")
}

// TestAdmissionInTheChain: with --max-active-calls 1, a second caller's
// call waits while the first holds the slot, never reaching its handler;
// when its deadline passes first it gets DEADLINE_EXCEEDED, and once the
// slot frees the next call goes through.
func TestAdmissionInTheChain(t *testing.T) {
	svc := newBlockingService()
	c, _ := chainServerFor(t, svc, overloadLimits{activeCalls: 1}, walletAPI, otherOrgAPI)
	ctx := testCtx(t)
	getKey := func(ctx context.Context) func() error {
		return func() error {
			_, err := c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: overloadKeyID})
			return err
		}
	}
	holding, stop := context.WithCancel(withToken(ctx, walletAPI.token))
	held := startHeld(t, svc, getKey(holding))

	short, cancel := context.WithTimeout(withToken(ctx, otherOrgAPI.token), 200*time.Millisecond)
	defer cancel()
	if err := getKey(short)(); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a call waiting for the one slot = %v, want DEADLINE_EXCEEDED", err)
	}
	select {
	case <-svc.entered:
		t.Fatal("a call reached its handler while the slot was held")
	default:
	}

	stop()
	if err := <-held; status.Code(err) != codes.Canceled {
		t.Fatalf("the held call after its cancellation = %v, want CANCELED", err)
	}
	close(svc.release)
	if err := getKey(withToken(ctx, otherOrgAPI.token))(); err != nil {
		t.Fatalf("a call after the slot freed: %v", err)
	}
}
