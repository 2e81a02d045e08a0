package app

import (
	"sync"
	"testing"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// concurrentCallers is how many callers race to assign the same key.
const concurrentCallers = 16

// TestConcurrentAssignKey: many callers asking at once for one customer's
// key get the same key, and the upstream is asked exactly once.
func TestConcurrentAssignKey(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	srv := startReady(t, remoteConfig(t, up, t.TempDir()), log, Options{})
	ctx := testCtx(t)

	var (
		wg        sync.WaitGroup
		start     = make(chan struct{})
		responses = make([]*recoveryv1.AssignKeyResponse, concurrentCallers)
		errs      = make([]error, concurrentCallers)
	)
	for i := range concurrentCallers {
		wg.Go(func() {
			<-start
			responses[i], errs[i] = srv.client.AssignKey(ctx, assignKeyRequest("user-race", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_COLD))
		})
	}
	close(start)
	wg.Wait()

	keyIDs := map[string]int{}
	fresh := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
			continue
		}
		keyIDs[responses[i].GetKey().GetKeyId()]++
		if !responses[i].GetAlreadyAssigned() {
			fresh++
		}
	}
	if len(keyIDs) != 1 {
		t.Errorf("callers got %d different keys: %v", len(keyIDs), keyIDs)
	}
	if fresh != 1 {
		t.Errorf("%d responses say the key was newly assigned, want exactly 1", fresh)
	}
	upstreamKeys := up.Inspect.Keys(t)
	if len(upstreamKeys) != 1 {
		t.Fatalf("upstream assigned %d keys, want 1: %+v", len(upstreamKeys), upstreamKeys)
	}
	if _, ok := keyIDs[upstreamKeys[0].KeyID]; !ok {
		t.Errorf("upstream key %s is not the key callers got (%v)", upstreamKeys[0].KeyID, keyIDs)
	}
}
