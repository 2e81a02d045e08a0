package app

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestMisbehavingUpstream runs recoveryd against the real emulator breaking
// the enclave signature in each of its ways: AssignKey is refused with
// FailedPrecondition ENCLAVE_SIGNATURE_INVALID, an error line names the
// failed check, the admin /metrics endpoint counts the result, and nothing
// usable is recorded: the key the upstream handed out cannot be read or
// encrypted to.
func TestMisbehavingUpstream(t *testing.T) {
	tests := []struct {
		mode string
		// result is the recovery.signature.verifications result recorded.
		result string
	}{
		{sandbox.MisbehaveBadSignature, "invalid_signature"},
		{sandbox.MisbehaveWrongBinding, "binding_mismatch"},
		{sandbox.MisbehaveSwappedKey, "binding_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			log, logs := newTestLogger(t)
			up := startUpstreamWith(t, upstreamOptions{dir: t.TempDir(), log: log, misbehave: tt.mode})
			srv := startReady(t, remoteConfig(t, up, t.TempDir()), log, Options{})
			ctx := testCtx(t)
			admin := adminAddress(t, logs.String())
			const family = "recovery_signature_verifications_total"
			before := scrapeMetrics(t, admin).value(family, map[string]string{"result": tt.result})

			_, err := srv.client.AssignKey(ctx, assignKeyRequest("victim", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
			wantStatus(t, err, codes.FailedPrecondition, "ENCLAVE_SIGNATURE_INVALID")

			after := scrapeMetrics(t, admin).value(family, map[string]string{"result": tt.result})
			if after-before != 1 {
				t.Errorf("%s{result=%q} went from %v to %v, want one more", family, tt.result, before, after)
			}
			if !hasLogLine(t, logs.String(), "ERROR", "enclave signature verification failed: key not trusted", "check", tt.result) {
				t.Errorf("no ERROR line naming check %q", tt.result)
			}

			// The upstream did hand out a key; recoveryd kept nothing usable.
			upstreamKeys := up.Inspect.Keys(t)
			if len(upstreamKeys) != 1 {
				t.Fatalf("upstream keys = %+v, want the one untrusted key", upstreamKeys)
			}
			untrusted := upstreamKeys[0].KeyID
			_, err = srv.client.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: untrusted})
			wantStatus(t, err, codes.NotFound, "KEY_NOT_FOUND")
			_, err = srv.client.SecureData(ctx, secureDataByKeyID(untrusted, []byte("would-be secret")))
			wantStatus(t, err, codes.NotFound, "KEY_NOT_FOUND")
			if keys, err := srv.client.ListKeys(ctx, &recoveryv1.ListKeysRequest{}); err != nil || len(keys.GetKeys()) != 0 {
				t.Errorf("ListKeys = %v, %v; want no keys", keys, err)
			}
			if backups := up.Inspect.Backups(t); len(backups) != 0 {
				t.Errorf("something was stored to the untrusted key: %+v", backups)
			}
			// A retry does not launder the key: it is refused the same way,
			// and the upstream still holds the one key.
			_, err = srv.client.AssignKey(ctx, assignKeyRequest("victim", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
			wantStatus(t, err, codes.FailedPrecondition, "ENCLAVE_SIGNATURE_INVALID")
			if keys := up.Inspect.Keys(t); len(keys) != 1 {
				t.Errorf("after a retry the upstream holds %d keys, want 1", len(keys))
			}
		})
	}
}

// hasLogLine reports whether logs has a JSON line at level with message msg
// and the attribute key equal to value.
func hasLogLine(t *testing.T, logs, level, msg, key, value string) bool {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec["level"] == level && rec["msg"] == msg && rec[key] == value {
			return true
		}
	}
	return false
}
