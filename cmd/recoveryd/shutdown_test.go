package main

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// shutdownLoad is the calls in flight when SIGTERM arrives: new pairs,
// SecureData and SecureFile stores.
var shutdownLoad = mix{assign: 2, data: 3, files: 1}

// TestSIGTERMDrainsCallsInFlight: the recoveryd process, SIGTERMed while
// calls are in flight upstream (a WAN-like --latency), turns health
// NOT_SERVING at once, refuses new connections, lets every call in flight
// finish OK, and exits 0.
func TestSIGTERMDrainsCallsInFlight(t *testing.T) {
	arrivals := newPartnerArrivals()
	up := sandboxtest.Start(t, sandboxtest.Options{Config: sandbox.Config{Latency: 500 * time.Millisecond}, Wrap: arrivals.Wrap})
	p := startRecoveryd(t, recoverydOptions{upstream: up, args: []string{"--shutdown-timeout", processDeadline.String()}})
	ctx, cancel := context.WithTimeout(t.Context(), processDeadline)
	defer cancel()
	key := assignOne(t, ctx, p.client, "owner")
	awaitN(t, arrivals.arrived, 1, "setup assignments")

	watch, err := p.health.Watch(ctx, &healthpb.HealthCheckRequest{Service: recoveryv1.RecoveryService_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch = %v, %v; want SERVING", first, err)
	}
	wait := runMixed(ctx, p.client, key.GetKeyId(), "drain", shutdownLoad, 0)
	awaitN(t, arrivals.arrived, shutdownLoad.total(), "calls in flight upstream")

	p.signal(t, syscall.SIGTERM)
	if next, err := watch.Recv(); err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after SIGTERM = %v, %v; want NOT_SERVING", next, err)
	}
	// A new connection is refused: its call fails instead of running.
	_, err = recoveryv1.NewRecoveryServiceClient(dialRecoveryd(t, p.addr)).AssignKey(ctx, assignRequest("late"))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a call on a new connection after SIGTERM = %v, want Unavailable", err)
	}

	calls := wait()
	for _, cl := range calls {
		if cl.err != nil {
			t.Errorf("%v: a call in flight failed although the shutdown timeout left it time", cl)
		}
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d, want 0 (every call drained)", code)
	}
	stored := map[string]bool{}
	for _, b := range up.Inspect.Backups(t) {
		stored[b.BackupID] = true
	}
	for _, cl := range calls {
		if cl.kind != callAssign && cl.err == nil && !stored[cl.id] {
			t.Errorf("%v: acknowledged, but the upstream does not hold it", cl)
		}
	}
	if keys := up.Inspect.Keys(t); len(keys) != 1+shutdownLoad.assign {
		t.Errorf("upstream holds %d keys, want %d", len(keys), 1+shutdownLoad.assign)
	}
}

// TestSIGTERMCutsCallsThatCannotFinish: calls whose upstream answers take
// longer than --shutdown-timeout are cut: the process exits 3, none of
// them is answered OK, each one that is answered says the outcome is
// unknown or nothing was done, and a restart on the same data directory
// finds no recorded backup the upstream lacks.
func TestSIGTERMCutsCallsThatCannotFinish(t *testing.T) {
	arrivals := newPartnerArrivals()
	// Every partner request takes 5 s, five times the shutdown timeout.
	up := sandboxtest.Start(t, sandboxtest.Options{Config: sandbox.Config{Latency: 5 * time.Second}, Wrap: arrivals.Wrap})
	p := startRecoveryd(t, recoverydOptions{upstream: up, args: []string{"--shutdown-timeout", "1s"}})
	ctx, cancel := context.WithTimeout(t.Context(), processDeadline)
	defer cancel()
	key := assignOne(t, ctx, p.client, "owner")
	awaitN(t, arrivals.arrived, 1, "setup assignments")
	awaitN(t, arrivals.ended, 1, "setup assignments")

	wait := runMixed(ctx, p.client, key.GetKeyId(), "cut", shutdownLoad, 0)
	awaitN(t, arrivals.arrived, shutdownLoad.total(), "calls in flight upstream")
	p.signal(t, syscall.SIGTERM)

	if code := p.wait(t); code != exitCallsCut {
		t.Errorf("exit code %d, want %d (calls were cut)", code, exitCallsCut)
	}
	calls := wait()
	// What a caller may be told about a call the shutdown cut: the outcome
	// is unknown (retry with the same idempotency key), or nothing was
	// done; or, cut at the deadline, the transport's Unavailable.
	allowed := []string{"ASSIGNMENT_BEING_RESOLVED", "ASSIGNMENT_OUTCOME_UNKNOWN", "BACKUP_OUTCOME_UNKNOWN", "UPSTREAM_UNAVAILABLE", ""}
	for _, cl := range calls {
		switch {
		case cl.err == nil:
			t.Errorf("%v: answered OK although its upstream call could not finish", cl)
		case !slices.Contains(allowed, reasonOf(cl.err)):
			t.Errorf("%v: want one of the reasons %q", cl, allowed)
		case reasonOf(cl.err) == "" && status.Code(cl.err) != codes.Unavailable:
			t.Errorf("%v: a call cut by the transport should be Unavailable", cl)
		}
	}
	p.logs.WaitFor(t, "abandoning the upstream calls in flight")

	// The emulator finishes what it received (answers nobody reads); then
	// a restart sees every recorded backup upstream.
	awaitN(t, arrivals.ended, shutdownLoad.total(), "cut requests to end upstream")
	again := startRecoveryd(t, recoverydOptions{upstream: up, dataDir: p.dataDir})
	stored := map[string]bool{}
	for _, b := range up.Inspect.Backups(t) {
		stored[b.BackupID] = true
	}
	listed, err := again.client.ListBackups(ctx, &recoveryv1.ListBackupsRequest{KeyId: key.GetKeyId()})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range listed.GetBackups() {
		if !stored[b.GetBackupId()] {
			t.Errorf("the registry records backup %s, which the upstream lacks", b.GetBackupId())
		}
	}
	again.signal(t, syscall.SIGTERM)
	if code := again.wait(t); code != 0 {
		t.Errorf("idle restart: exit code %d, want 0", code)
	}
}
