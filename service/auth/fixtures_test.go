package auth_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Tokens whose digests are in testdata/callers.json. Test-only values.
const (
	tokenWalletAPI     = "test-token-wallet-api-1"
	tokenSupport       = "test-token-support-1"
	tokenBatch         = "test-token-batch-1"
	tokenSpiffeSupport = "test-token-spiffe-support-1"
)

// digestOf is the token_sha256 of a token, as an operator computes it.
func digestOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// testCallersFile copies testdata/callers.json into a private file (0600:
// the loader refuses the 0644 a checkout gives) and returns its path.
func testCallersFile(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "callers.json"))
	if err != nil {
		t.Fatal(err)
	}
	return writeCallersFile(t, string(data))
}

// writeCallersFile writes content to a fresh 0600 file and returns its path.
func writeCallersFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "callers.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil { //nolint:gosec // G703: path is under t.TempDir()
		t.Fatal(err)
	}
	return path
}

// replaceFile atomically replaces path with content at the given mode, as a
// deployment tool (or a Kubernetes secret update) does.
func replaceFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	next := path + ".next"
	if err := os.WriteFile(next, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(next, mode); err != nil { // WriteFile's mode is filtered by umask
		t.Fatal(err)
	}
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
}

// callersJSON renders a callers file from entries.
func callersJSON(t *testing.T, entries ...map[string]any) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{"callers": entries})
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// entry is one callers file entry for callersJSON.
func entry(name, token string, orgs ...string) map[string]any {
	return map[string]any{"name": name, "token_sha256": digestOf(token), "organisations": orgs}
}
