package sandbox_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Values that differ per run are replaced before comparing; everything
// else (field names, nesting, types, fixed strings, clock-driven times,
// test-pool keys) is compared exactly.
var (
	uuidPattern      = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`)
	publicKeyPattern = regexp.MustCompile(`30820222300d06092a864886f70d0101010500[0-9a-f]+`)
	signaturePattern = regexp.MustCompile(`"signature":"[A-Za-z0-9+/=]+"`)
)

// normalize replaces the per-run values, plus the literal replacements
// a case knows of (e.g. the digest of a randomised ciphertext).
func normalize(body []byte, replace map[string]string) []byte {
	for from, to := range replace {
		body = bytes.ReplaceAll(body, []byte(from), []byte(to))
	}
	body = uuidPattern.ReplaceAll(body, []byte("<uuid>"))
	body = publicKeyPattern.ReplaceAll(body, []byte("<public_key>"))
	body = signaturePattern.ReplaceAll(body, []byte(`"signature":"<es256-der-base64>"`))
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(body), "", "  "); err != nil {
		return body
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// TestGoldenWireShapes pins the JSON the emulator puts on the wire (the
// shapes the adapter parses) in testdata/*.json; run with -update to
// rewrite them after an intended change.
func TestGoldenWireShapes(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	h := start(t, sandbox.Config{
		Now:          func() time.Time { return now },
		MaxFileBytes: 16,
		SigningKeys: []sandbox.SigningKey{{KID: sandbox.DefaultSigningKID, Private: testkeys.EC(0),
			ValidFrom: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}},
	})
	assign := h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, assignRequest("alice@acme.io", "org-123",
		"external_customer_id", "external_package_id", "user_id", "key_id", "key_fingerprint", "pulled_by_id", "pulled_by_type"))
	var a assigned
	decodeStrict(t, assign, &a)
	plain := h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, assignRequest("bob@acme.io", "org-123"))

	data, checksum := seal(t, a.PublicKey, []byte("golden plaintext"))
	ciphertext, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		t.Fatal(err)
	}
	ciphertextDigest := sha256Hex(ciphertext)
	secureData := h.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
		"public_key": a.PublicKey, "data": data, "checksum": checksum, "padding_type": "OAEP",
		"metadata": map[string]string{"description": "Encrypted key shares", "content_type": "application/json", "original_filename": "key_shares.json"}})
	file := func(ct string, n int) response {
		body, mct := multipartBody(t, []formPart{{name: "public_key", value: a.PublicKey},
			{name: "file", filename: "backup.bin", contentType: ct, data: bytes.Repeat([]byte{1}, n)},
			{name: "metadata", value: `{"description":"Wallet seed backup","original_filename":"backup.bin"}`}})
		return h.do(http.MethodPost, sandbox.PathSecureFile, sandbox.DevPartnerToken, mct, bytes.NewReader(body))
	}
	secureFile := file("application/octet-stream", 16)

	cases := []struct {
		name   string
		resp   response
		status int
	}{
		{"assign_key_sign_with", assign, 200},
		{"assign_key", plain, 200},
		{"secure_data", secureData, 200},
		{"secure_file", secureFile, 200},
		{"inspect_keys", h.do(http.MethodGet, sandbox.PathInspectKeys, "", "", nil), 200},
		{"inspect_backups", h.do(http.MethodGet, sandbox.PathInspectBackups, "", "", nil), 200},
		{"jwks", h.do(http.MethodGet, sandbox.PathJWKS, "", "", nil), 200},
		{"error_401", h.postJSON(sandbox.PathAssignKey, "", `{}`), 401},
		{"error_403", h.postJSON(sandbox.PathAssignKey, sandbox.DevNoScopeToken, `{}`), 403},
		{"error_409", h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, assignRequest("alice@acme.io", "org-123")), 409},
		{"error_400_assign", h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, `{"user_identifier":"x","key_type":"rsa4096","sign_with":["public_key"]}`), 400},
		{"error_400_checksum", h.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
			"public_key": a.PublicKey, "data": data, "checksum": "not-a-sha256"}), 400},
		{"error_400_padding", h.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
			"public_key": a.PublicKey, "data": data, "checksum": checksum, "padding_type": "PKCS1"}), 400},
		{"error_400_verification", h.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
			"public_key": a.PublicKey, "data": data, "checksum": sha256Hex([]byte("other"))}), 400},
		{"error_404", h.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
			"public_key": "ab" + a.PublicKey[2:], "data": data, "checksum": checksum}), 404},
		{"error_413", file("application/octet-stream", 17), 413},
		{"error_415", file("text/plain", 1), 415},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.resp.status != tc.status {
				t.Fatalf("status %d, want %d: %s", tc.resp.status, tc.status, tc.resp.body)
			}
			got := normalize(tc.resp.body, map[string]string{ciphertextDigest: "<sha256 of the random OAEP ciphertext>"})
			path := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o600); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}
