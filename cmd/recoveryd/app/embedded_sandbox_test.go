package app

import (
	"io"
	"net/http"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestEmbeddedSandboxServesNoInspection: recoveryd's embedded sandbox
// serves the partner endpoints and the JWKS, but none of the emulator's
// inspection routes (private keys, backup contents, recover), which need no
// token: each is a 404, as an unknown path.
func TestEmbeddedSandboxServesNoInspection(t *testing.T) {
	log, _ := newTestLogger(t)
	sb, err := startEmbeddedSandbox(testCtx(t), log, t.TempDir(), testkeys.NewRSASource())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sb.close(); err != nil {
			t.Error(err)
		}
	})
	do := func(method, path string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(testCtx(t), method, sb.baseURL+path, http.NoBody)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if got := do(http.MethodGet, sandbox.PathJWKS); got != http.StatusOK {
		t.Errorf("GET %s = %d, want 200: the embedded sandbox must still publish its JWKS", sandbox.PathJWKS, got)
	}
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, sandbox.PathInspectKeys},
		{http.MethodGet, sandbox.PathInspectKeys + "/some-key/private-key"},
		{http.MethodGet, sandbox.PathInspectBackups},
		{http.MethodGet, sandbox.PathInspectBackups + "/some-backup/content"},
		{http.MethodPost, sandbox.PathInspectBackups + "/some-backup/recover"},
		{http.MethodGet, sandbox.PathInspectFaults},
	} {
		if got := do(r.method, r.path); got != http.StatusNotFound {
			t.Errorf("%s %s on the embedded sandbox = %d, want 404", r.method, r.path, got)
		}
	}
}
