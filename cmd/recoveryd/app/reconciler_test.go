package app

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// TestRunResolvesUnknownAssignments: Run starts the reconciler. An
// assignment whose every answer the emulator dropped (reset-before: the
// enclave never saw it) is unknown, and the customer hears
// ASSIGNMENT_BEING_RESOLVED; once the upstream answers again (a recoveryd
// on the same registry, pointed at the same emulator state served without
// faults), the reconciler records the key by itself, the customer's next
// AssignKey gets it, and /metrics counts the resolution.
func TestRunResolvesUnknownAssignments(t *testing.T) {
	log, _ := newTestLogger(t)
	state := t.TempDir()
	store := openTestRegistry(t)
	faulty := sandboxtest.Start(t, sandboxtest.Options{Config: sandbox.Config{
		DataDir: state, Faults: map[string]float64{sandbox.FaultResetBefore: 1}, FaultPaths: []string{sandbox.PathAssignKey}}})
	cfg := remoteConfig(t, faulty, t.TempDir())
	cfg.ReconcileInterval = time.Hour
	first := startReady(t, cfg, log, Options{Registry: store})
	req := assignKeyRequest("user-reconciled", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)
	_, err := first.client.AssignKey(testCtx(t), req)
	wantStatus(t, err, codes.Unavailable, "ASSIGNMENT_BEING_RESOLVED")
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}

	healthy := sandboxtest.Start(t, sandboxtest.Options{Config: sandbox.Config{DataDir: state}})
	cfg = remoteConfig(t, healthy, t.TempDir())
	cfg.ReconcileInterval = time.Hour // only the pass at start can resolve it in time
	second := startReady(t, cfg, log, Options{Registry: store})
	ctx := testCtx(t)
	for {
		resp, err := second.client.AssignKey(ctx, req)
		if err == nil {
			keys := healthy.Inspect.Keys(t)
			if !resp.GetAlreadyAssigned() || len(keys) != 1 || keys[0].KeyID != resp.GetKey().GetKeyId() {
				t.Fatalf("AssignKey after resolution = %v; upstream holds %+v; want its one key, already assigned", resp, keys)
			}
			break
		}
		wantStatus(t, err, codes.Unavailable, "ASSIGNMENT_BEING_RESOLVED")
		select {
		case <-ctx.Done():
			t.Fatal("the reconciler never resolved the pair")
		case <-time.After(100 * time.Millisecond):
		}
	}
	if n := scrapeMetrics(t, second.AdminAddr).value("recovery_assignment_resolutions_total", map[string]string{"outcome": "recorded"}); n < 1 {
		t.Errorf("recovery_assignment_resolutions_total{outcome=recorded} = %v, want at least 1", n)
	}
}
