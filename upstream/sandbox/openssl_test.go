package sandbox_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// oaepSHA256 are openssl pkeyutl's options for the contract's padding:
// RSA-OAEP with SHA-256 as both the OAEP and the MGF1 hash.
var oaepSHA256 = []string{"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"}

// openssl runs the openssl binary in dir; a missing binary fails the test
// (`make system-deps` installs it), it never skips.
func openssl(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is required for the interop test (run make system-deps): %v", err)
	}
	cmd := exec.CommandContext(t.Context(), path, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// TestOpenSSLInterop runs the README's openssl steps against the emulator:
// a ciphertext openssl made from the hex public key is accepted by
// secure/data, and openssl decrypts a keycrypto ciphertext with the key
// from the private-key inspection endpoint. It also shows the emulator
// rejecting openssl's default OAEP (SHA-1), the most common mistake.
func TestOpenSSLInterop(t *testing.T) {
	h := start(t, sandbox.Config{})
	dir := t.TempDir()
	a := h.assign(assignRequest("alice", "org-1"))

	der, err := hex.DecodeString(a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "key.der", der)
	openssl(t, dir, "pkey", "-pubin", "-inform", "DER", "-in", "key.der", "-out", "key.pem")
	pemFromOpenSSL, _ := os.ReadFile(filepath.Join(dir, "key.pem"))
	if pemFromKeycrypto, err := keycrypto.HexToPEM(a.PublicKey); err != nil || string(pemFromOpenSSL) != pemFromKeycrypto {
		t.Fatalf("openssl and keycrypto disagree on the PEM (%v):\n%s\n%s", err, pemFromOpenSSL, pemFromKeycrypto)
	}

	plaintext := []byte("twelve words of a seed phrase")
	writeFile(t, dir, "plain.txt", plaintext)
	store := func(ciphertext []byte) response {
		return h.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
			"public_key": a.PublicKey, "data": base64.StdEncoding.EncodeToString(ciphertext),
			"checksum": keycrypto.Checksum(plaintext), "padding_type": "OAEP"})
	}
	good := openssl(t, dir, append([]string{"pkeyutl", "-encrypt", "-pubin", "-inkey", "key.pem", "-in", "plain.txt"}, oaepSHA256...)...)
	if resp := store(good); resp.status != http.StatusOK {
		t.Fatalf("openssl OAEP-SHA256 ciphertext rejected: %d %s", resp.status, resp.body)
	}
	sha1Default := openssl(t, dir, "pkeyutl", "-encrypt", "-pubin", "-inkey", "key.pem", "-in", "plain.txt",
		"-pkeyopt", "rsa_padding_mode:oaep")
	if resp := store(sha1Default); resp.status != http.StatusBadRequest || resp.errorBody(t).Error != "verification_failed" {
		t.Fatalf("openssl's default OAEP (SHA-1) accepted: %d %s", resp.status, resp.body)
	}

	privPEM := h.do(http.MethodGet, sandbox.PathInspectKeys+"/"+a.KeyID+"/private-key", "", "", nil)
	if privPEM.status != http.StatusOK {
		t.Fatalf("private-key: %d", privPEM.status)
	}
	writeFile(t, dir, "priv.pem", privPEM.body)
	pub, _ := keycrypto.ParsePublicKeyHex(a.PublicKey)
	ct, err := keycrypto.Encrypt(rand.Reader, pub, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "ct.bin", ct)
	got := openssl(t, dir, append([]string{"pkeyutl", "-decrypt", "-inkey", "priv.pem", "-in", "ct.bin"}, oaepSHA256...)...)
	if !bytes.Equal(got, plaintext) {
		t.Fatalf("openssl decrypted %q, want %q", got, plaintext)
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}
