package keycrypto_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// openssl runs the openssl CLI with stdin and returns its stdout. A missing
// openssl fails the test: the interop checks are the point, not optional.
func openssl(t *testing.T, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl CLI not found: install it (apt-get install openssl, or `make system-deps`); the interop tests need it: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Logf("openssl %v: %v: %s", args, err, stderr.Bytes())
	}
	return out, err
}

// mustOpenssl is openssl for steps that must succeed.
func mustOpenssl(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	out, err := openssl(t, stdin, args...)
	if err != nil {
		t.Fatalf("openssl %v failed: %v", args, err)
	}
	return out
}

// writePrivateKeyPEM writes a TEST pool key as PKCS#8 PEM into a temp dir
// for openssl to read.
func writePrivateKeyPEM(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writeTemp(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
