package sandbox_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // G505: the test makes the SHA-1 OAEP mistake on purpose, to see it refused
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestSecureDataFailures covers the secure/data rows: malformed checksum
// (400 keyed on checksum), PKCS1 (400), the enclave's verification catching
// the common client mistakes (400 verification_failed), unknown key (404),
// and every other field rule. None of them stores anything.
func TestSecureDataFailures(t *testing.T) {
	h := start(t, sandbox.Config{})
	a := h.assign(assignRequest("alice", "org-1"))
	other := h.assign(assignRequest("bob", "org-1"))
	plaintext := []byte("seed words go here")
	data, checksum := seal(t, a.PublicKey, plaintext)
	pub, err := keycrypto.ParsePublicKeyHex(a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ciphertext, _ := base64.StdEncoding.DecodeString(data)

	// The mistakes the provider sees most, made for real.
	sha1OAEP, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub.RSA, plaintext, nil) //nolint:gosec // G401: the SHA-1 mistake on purpose, to see it refused
	if err != nil {
		t.Fatal(err)
	}
	mgf1Mismatch, err := rsa.EncryptOAEPWithOptions(rand.Reader, pub.RSA, plaintext, &rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA1})
	if err != nil {
		t.Fatal(err)
	}
	pkcs1v15, err := rsa.EncryptPKCS1v15(rand.Reader, pub.RSA, plaintext) //nolint:staticcheck // SA1019: PKCS #1 v1.5 on purpose, to see it refused
	if err != nil {
		t.Fatal(err)
	}
	otherData, _ := seal(t, other.PublicKey, plaintext)

	valid := func(mutate func(m map[string]any)) map[string]any {
		m := map[string]any{"public_key": a.PublicKey, "data": data, "checksum": checksum, "padding_type": "OAEP"}
		mutate(m)
		return m
	}
	cases := []struct {
		name    string
		body    any
		status  int
		errType string
		fields  []string
	}{
		{"malformed checksum (short)", valid(func(m map[string]any) { m["checksum"] = "abc123" }), 400, "invalid_request", []string{"checksum"}},
		{"malformed checksum (not hex)", valid(func(m map[string]any) { m["checksum"] = strings.Repeat("z", 64) }), 400, "invalid_request", []string{"checksum"}},
		{"missing checksum", valid(func(m map[string]any) { delete(m, "checksum") }), 400, "invalid_request", []string{"checksum"}},
		{"padding PKCS1", valid(func(m map[string]any) { m["padding_type"] = "PKCS1" }), 400, "invalid_request", []string{"padding_type"}},
		{"padding lowercase oaep", valid(func(m map[string]any) { m["padding_type"] = "oaep" }), 400, "invalid_request", []string{"padding_type"}},
		{"missing public_key", valid(func(m map[string]any) { delete(m, "public_key") }), 400, "invalid_request", []string{"public_key"}},
		{"short public_key", valid(func(m map[string]any) { m["public_key"] = "abcdef" }), 400, "invalid_request", []string{"public_key"}},
		{"non-hex public_key", valid(func(m map[string]any) { m["public_key"] = strings.Repeat("xy", 40) }), 400, "invalid_request", []string{"public_key"}},
		{"overlong public_key", valid(func(m map[string]any) { m["public_key"] = strings.Repeat("ab", 2049) }), 400, "invalid_request", []string{"public_key"}},
		{"missing data", valid(func(m map[string]any) { delete(m, "data") }), 400, "invalid_request", []string{"data"}},
		{"data not base64", valid(func(m map[string]any) { m["data"] = "not base64!" }), 400, "invalid_request", []string{"data"}},
		{"data base64url", valid(func(m map[string]any) {
			m["data"] = base64.RawURLEncoding.EncodeToString(ciphertext)
		}), 400, "invalid_request", []string{"data"}},
		{"metadata not an object", valid(func(m map[string]any) { m["metadata"] = "x" }), 400, "invalid_request", []string{"metadata"}},
		{"metadata field not a string", valid(func(m map[string]any) { m["metadata"] = map[string]any{"description": 1} }), 400, "invalid_request", []string{"metadata.description"}},
		{"checksum over the ciphertext", valid(func(m map[string]any) {
			m["checksum"] = sha256Hex(ciphertext)
		}), 400, "verification_failed", nil},
		{"checksum of other plaintext", valid(func(m map[string]any) { m["checksum"] = keycrypto.Checksum([]byte("other")) }), 400, "verification_failed", nil},
		{"OAEP with SHA-1", valid(func(m map[string]any) { m["data"] = b64(sha1OAEP) }), 400, "verification_failed", nil},
		{"MGF1 hash mismatched", valid(func(m map[string]any) { m["data"] = b64(mgf1Mismatch) }), 400, "verification_failed", nil},
		{"PKCS#1 v1.5 ciphertext sent as OAEP", valid(func(m map[string]any) { m["data"] = b64(pkcs1v15) }), 400, "verification_failed", nil},
		{"encrypted to another key", valid(func(m map[string]any) { m["data"] = otherData }), 400, "verification_failed", nil},
		{"truncated ciphertext", valid(func(m map[string]any) { m["data"] = b64(ciphertext[:100]) }), 400, "verification_failed", nil},
		{"unknown key", valid(func(m map[string]any) { m["public_key"] = strings.Repeat("ab", 550) }), 404, "not_found", nil},
		{"body not JSON", `{"public_key":`, 400, "invalid_request", nil},
		{"body over 1 MiB", `{"data":"` + strings.Repeat("A", 1<<20) + `"}`, 413, "payload_too_large", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, tc.body)
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tc.status, resp.body)
			}
			e := resp.errorBody(t)
			if e.Error != tc.errType {
				t.Errorf("error %q, want %q (%s)", e.Error, tc.errType, e.Message)
			}
			if len(e.Fields) != len(tc.fields) {
				t.Errorf("fields %v, want keys %v", e.Fields, tc.fields)
			}
			for _, f := range tc.fields {
				if e.Fields[f] == "" {
					t.Errorf("fields lack %q: %v", f, e.Fields)
				}
			}
			if strings.Contains(string(resp.body), string(plaintext)) {
				t.Error("error body leaks the plaintext")
			}
		})
	}
	if n := len(h.inspect.Backups(t)); n != 0 {
		t.Fatalf("%d backups stored by rejected requests", n)
	}

	// The same request, corrected, goes through: padding_type may be left
	// out (default OAEP), checksum may be uppercase and comes back lowercase.
	resp := h.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
		"public_key": a.PublicKey, "data": data, "checksum": strings.ToUpper(checksum)})
	var ok struct {
		BackupID   string            `json:"backup_id"`
		Checksum   string            `json:"checksum"`
		DataSize   int               `json:"data_size"`
		BackupType string            `json:"backup_type"`
		Metadata   map[string]string `json:"metadata"`
	}
	decodeStrict(t, resp, &ok)
	if ok.Checksum != checksum || len(ok.Metadata) != 1 || ok.Metadata["stored_at"] == "" {
		t.Fatalf("corrected request: %s", resp.body)
	}
	if resp.status != http.StatusOK || len(h.inspect.Backups(t)) != 1 {
		t.Fatal("corrected request did not store exactly one backup")
	}
}

// TestSkipDataVerification: the benchmark mode stores a block whose
// checksum does not match (which the enclave, and the default emulator,
// refuses), but still refuses data that is not one RSA-4096 block.
func TestSkipDataVerification(t *testing.T) {
	wrongSum := strings.Repeat("ab", 32)
	for _, skip := range []bool{false, true} {
		h := start(t, sandbox.Config{SkipDataVerification: skip})
		a := h.assign(assignRequest("alice", "org-1"))
		data, _ := seal(t, a.PublicKey, []byte("material"))
		resp := h.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
			"public_key": a.PublicKey, "data": data, "checksum": wrongSum})
		if want := map[bool]int{false: http.StatusBadRequest, true: http.StatusOK}[skip]; resp.status != want {
			t.Errorf("skip=%t: a wrong checksum answered %d, want %d (%s)", skip, resp.status, want, resp.body)
		}
		short := h.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
			"public_key": a.PublicKey, "data": "AAAA", "checksum": wrongSum})
		if short.status == http.StatusOK {
			t.Errorf("skip=%t: a 3-byte block was stored", skip)
		}
	}
}
