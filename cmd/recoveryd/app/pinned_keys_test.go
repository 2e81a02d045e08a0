package app

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// signingKeyFingerprints reads the emulator's JWKS over HTTP, as an
// operator would, and returns each key's --verification-key-fingerprints
// entry.
func signingKeyFingerprints(t *testing.T, up *sandboxtest.Sandbox) []string {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodGet, up.HTTP.URL+sandbox.PathJWKS, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := up.HTTP.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	set, err := keycrypto.ParseJWKS(body)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		fp, err := upstream.VerificationKeyFingerprint(k.Key)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fp)
	}
	return out
}

// TestPinnedVerificationKeys: with --verification-key-fingerprints, a key
// of the emulator's JWKS whose fingerprint is not listed is never used. The
// emulator publishes two keys and signs with the second: pinning only the
// first refuses every assignment (nothing reaches the registry); pinning
// the signer lets it through.
func TestPinnedVerificationKeys(t *testing.T) {
	log, _ := newTestLogger(t)
	up := sandboxtest.Start(t, sandboxtest.Options{Config: sandbox.Config{
		SigningKeys: []sandbox.SigningKey{
			{KID: "pinned", Private: testkeys.EC(0), Purposes: []string{keycrypto.PurposeAssignmentSig}},
			{KID: "added-later", Private: testkeys.EC(1), Active: true, Purposes: []string{keycrypto.PurposeAssignmentSig}},
		},
		Logger: log.With("component", "test-upstream"),
	}})
	fps := signingKeyFingerprints(t, up)
	if len(fps) != 2 {
		t.Fatalf("the emulator publishes %d keys, want 2", len(fps))
	}
	pinnedKey, signer := fps[0], fps[1]
	ctx := testCtx(t)

	t.Run("signer not pinned", func(t *testing.T) {
		cfg := remoteConfig(t, up, t.TempDir())
		// Upper case with colons, as a certificate tool prints it.
		cfg.VerificationKeyFingerprints = colonHex(pinnedKey)
		srv := startServer(t, cfg, log, Options{})
		_, err := srv.client.AssignKey(ctx, assignKeyRequest("pinned-elsewhere", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_COLD))
		wantStatus(t, err, codes.FailedPrecondition, "ENCLAVE_SIGNATURE_INVALID")
		list, err := srv.client.ListKeys(ctx, &recoveryv1.ListKeysRequest{CustomerId: testCustomerID})
		if err != nil || len(list.GetKeys()) != 0 {
			t.Errorf("registry holds %v (%v) after an assignment signed by an unpinned key, want none", list.GetKeys(), err)
		}
	})
	t.Run("signer pinned", func(t *testing.T) {
		cfg := remoteConfig(t, up, t.TempDir())
		cfg.VerificationKeyFingerprints = pinnedKey + ", " + signer
		srv := startReady(t, cfg, log, Options{})
		assignKey(t, ctx, srv.client, "pinned-signer")
	})
}

// colonHex writes a hex fingerprint as AB:CD:….
func colonHex(fp string) string {
	var parts []string
	for i := 0; i < len(fp); i += 2 {
		parts = append(parts, strings.ToUpper(fp[i:i+2]))
	}
	return strings.Join(parts, ":")
}

// TestVerificationKeyFingerprintsValidation: each entry is a SHA-256 in hex,
// and the flag needs a real upstream.
func TestVerificationKeyFingerprintsValidation(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.VerificationKeyFingerprints = "abc, " + pinnedFingerprint
	err := cfg.validate(envMap(nil))
	if want := `--verification-key-fingerprints: "abc" is not a SHA-256 fingerprint (64 hex digits)`; err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %q", err, want)
	}
	embedded := DefaultConfig()
	embedded.DataDir = filepath.Join(t.TempDir(), "data")
	embedded.VerificationKeyFingerprints = pinnedFingerprint
	if err := embedded.validate(envMap(nil)); err == nil || !strings.Contains(err.Error(), "--verification-key-fingerprints need --upstream-url") {
		t.Errorf("Validate() on the embedded sandbox = %v, want a refusal", err)
	}
}
