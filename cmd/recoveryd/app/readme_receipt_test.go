package app

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/upstream"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestREADMEReceiptVerification runs the README's receipt verification
// commands, as they are, with real grpcurl, curl, jq, xxd and openssl,
// against a real recoveryd on a TCP port and its upstream's JWKS (standing
// in for the provider's): a key's receipt verifies with nothing of
// recoveryd's trusted. A payload changed by one byte then fails the same
// openssl step, so the step proves something.
func TestREADMEReceiptVerification(t *testing.T) {
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- receipt-verification:.*?-->\n```sh\n(.*?)\n```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no receipt-verification block")
	}
	var path []string
	for _, tool := range []struct{ name, install string }{
		{"grpcurl", "run `make tools`"},
		{"openssl", "run `make system-deps`"},
		{"jq", "install jq (apt-get install jq)"},
		{"curl", "install curl"},
		{"xxd", "install xxd"},
		{"bash", "install bash"},
	} {
		path = append(path, filepath.Dir(findTool(t, tool.name, tool.install)))
	}

	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	lis, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.AdminListen = ""
	srv := startReady(t, cfg, log, Options{Listener: lis})
	resp, err := srv.client.AssignKey(testCtx(t), &recoveryv1.AssignKeyRequest{
		UserIdentifier: "alice",
		KeyEnvironment: recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT,
		Organisation:   &recoveryv1.Organisation{CustomerId: "acme", CustomerName: "Acme Wallets"},
		Package:        &recoveryv1.Package{PackageId: "gold", PackageName: "Gold"},
	})
	if err != nil {
		t.Fatal(err)
	}

	script := string(m[1])
	if !strings.Contains(script, upstream.ProductionJWKSURL) {
		t.Fatalf("the README's receipt commands do not fetch %s", upstream.ProductionJWKSURL)
	}
	script = strings.ReplaceAll(script, upstream.ProductionJWKSURL, up.HTTP.URL+sandbox.PathJWKS)
	script = strings.ReplaceAll(script, readmeAddr, lis.Addr().String())
	dir := t.TempDir()
	env := append(os.Environ(), "PATH="+strings.Join(path, ":")+":"+os.Getenv("PATH"), "KEY_ID="+resp.GetKey().GetKeyId())
	cmd := exec.CommandContext(testCtx(t), "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README receipt verification failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Verified OK") || !strings.Contains(string(out), "true") {
		t.Errorf("README receipt verification printed:\n%s\nwant Verified OK and true", out)
	}

	payload := filepath.Join(dir, "payload.json")
	b, err := os.ReadFile(payload)
	if err != nil {
		t.Fatal(err)
	}
	tampered := strings.Replace(string(b), `"external_customer_id":"acme"`, `"external_customer_id":"acmf"`, 1)
	if tampered == string(b) {
		t.Fatalf("payload %s does not bind the organisation", b)
	}
	if err := os.WriteFile(payload, []byte(tampered), 0o600); err != nil { //nolint:gosec // G703: the test's own temporary file
		t.Fatal(err)
	}
	verify := exec.CommandContext(testCtx(t), "openssl", "dgst", "-sha256", "-verify", "enclave.pem", "-signature", "signature.der", "payload.json")
	verify.Dir, verify.Env = dir, env
	if out, err := verify.CombinedOutput(); err == nil {
		t.Errorf("openssl verified a tampered payload:\n%s", out)
	}
}
