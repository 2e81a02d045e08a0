package sandbox_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestInspection covers the emulator-only endpoints: key and backup lists,
// the private key as PKCS#8 PEM, and their error answers.
func TestInspection(t *testing.T) {
	h := start(t, sandbox.Config{})
	if k, b := h.inspect.Keys(t), h.inspect.Backups(t); len(k) != 0 || len(b) != 0 {
		t.Fatalf("fresh emulator lists %d keys, %d backups", len(k), len(b))
	}
	a := h.assign(assignRequest("alice", "org-1"))
	hot := assignRequest("bob", "org-2")
	hot["key_environment"] = "HOT"
	b := h.assign(hot)

	keys := h.inspect.Keys(t)
	if len(keys) != 2 || keys[0].KeyID != a.KeyID || keys[1].KeyID != b.KeyID {
		t.Fatalf("keys not listed in assignment order: %+v", keys)
	}
	if k := keys[1]; k.UserIdentifier != "bob" || k.CustomerID != "org-2" || k.PackageID != "pkg-456" ||
		k.KeyEnvironment != "HOT" || k.PublicKey != b.PublicKey || k.CreatedAt == "" || k.UserID == "" {
		t.Fatalf("key entry %+v", k)
	}

	resp := h.do(http.MethodGet, sandbox.PathInspectKeys+"/"+a.KeyID+"/private-key", "", "", nil)
	if resp.status != http.StatusOK || resp.header.Get("Content-Type") != "application/x-pem-file" {
		t.Fatalf("private-key: %d %s", resp.status, resp.header.Get("Content-Type"))
	}
	block, rest := pem.Decode(resp.body)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("private-key is not one PKCS#8 PEM block:\n%s", resp.body)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	priv, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("private key is %T", parsed)
	}
	pub, err := keycrypto.PublicKeyFromPrivate(priv)
	if err != nil || pub.Hex() != a.PublicKey {
		t.Fatalf("private key does not match the assigned public key (%v)", err)
	}

	// A file backup is returned as stored, not "recovered".
	body, ct := multipartBody(t, []formPart{{name: "public_key", value: a.PublicKey},
		{name: "file", filename: "f.bin", contentType: "application/octet-stream", data: []byte("bytes")}})
	var file struct {
		BackupID string `json:"backup_id"`
	}
	decodeStrict(t, h.do(http.MethodPost, sandbox.PathSecureFile, sandbox.DevPartnerToken, ct, bytes.NewReader(body)), &struct {
		BackupID   *string        `json:"backup_id"`
		BackupType string         `json:"backup_type"`
		Metadata   map[string]any `json:"metadata"`
	}{BackupID: &file.BackupID})

	const unknown = "00000000-0000-4000-8000-000000000000"
	cases := []struct {
		name, method, path string
		status             int
		errType            string
	}{
		{"recover a file backup", http.MethodPost, sandbox.PathInspectBackups + "/" + file.BackupID + "/recover", 400, "invalid_request"},
		{"recover unknown", http.MethodPost, sandbox.PathInspectBackups + "/" + unknown + "/recover", 404, "not_found"},
		{"content unknown", http.MethodGet, sandbox.PathInspectBackups + "/" + unknown + "/content", 404, "not_found"},
		{"content bad id", http.MethodGet, sandbox.PathInspectBackups + "/..%2fstate.json/content", 400, "invalid_request"},
		{"private key unknown", http.MethodGet, sandbox.PathInspectKeys + "/" + unknown + "/private-key", 404, "not_found"},
		{"private key bad id", http.MethodGet, sandbox.PathInspectKeys + "/alice/private-key", 400, "invalid_request"},
		{"unknown path", http.MethodGet, "/v1/partner/keys/" + a.KeyID, 404, "not_found"},
		{"GET on a partner endpoint", http.MethodGet, sandbox.PathAssignKey, 405, "method_not_allowed"},
		{"POST on the JWKS", http.MethodPost, sandbox.PathJWKS, 405, "method_not_allowed"},
		{"DELETE a backup list", http.MethodDelete, sandbox.PathInspectBackups, 405, "method_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.do(tc.method, tc.path, sandbox.DevPartnerToken, "", nil)
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tc.status, resp.body)
			}
			if e := resp.errorBody(t); e.Error != tc.errType {
				t.Errorf("error %q, want %q", e.Error, tc.errType)
			}
			if tc.status == 405 && resp.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	if log := h.logs.String(); strings.Contains(log, "BEGIN PRIVATE KEY") {
		t.Error("private key reached the log")
	}
}

// TestHealth: 200 while serving, 503 after Close.
func TestHealth(t *testing.T) {
	h := start(t, sandbox.Config{})
	if !h.srv.Ready() {
		t.Fatal("not ready after New")
	}
	if resp := h.do(http.MethodGet, sandbox.PathHealth, "", "", nil); resp.status != http.StatusOK || !strings.Contains(string(resp.body), `"ok"`) {
		t.Fatalf("health: %d %s", resp.status, resp.body)
	}
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if h.srv.Ready() {
		t.Fatal("ready after Close")
	}
	if resp := h.do(http.MethodGet, sandbox.PathHealth, "", "", nil); resp.status != http.StatusServiceUnavailable {
		t.Fatalf("health after Close: %d", resp.status)
	}
}
