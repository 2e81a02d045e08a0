package sandbox_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestHappyPath walks the contract's happy path: assign a key, verify its
// signature and binding, store an encrypted payload, upload a file, see
// both backups filed against the right customer and package, and recover
// the payload end to end.
func TestHappyPath(t *testing.T) {
	h := start(t, sandbox.Config{})

	a := h.assign(assignRequest("alice@acme.io", "org-123",
		"external_customer_id", "external_package_id", "user_id", "key_id", "key_fingerprint", "pulled_by_id", "pulled_by_type"))
	if a.CustomerID != "org-123" || a.PackageID != "pkg-456" || a.Metadata.CustomerName != "Acme Corp" || a.Metadata.PackageName != "Main Workspace" {
		t.Fatalf("assignment echoes the wrong organisation or package: %+v", a)
	}
	pub, err := keycrypto.ParsePublicKeyHex(a.PublicKey)
	if err != nil {
		t.Fatalf("public_key is not an RSA-4096 SPKI: %v", err)
	}
	if !strings.HasPrefix(a.PublicKey, "30820222300d06092a864886f70d0101010500") || len(a.PublicKey) != keycrypto.SPKIHexLen {
		t.Fatalf("public_key is not lowercase SPKI hex of 1100 chars: %.60s…", a.PublicKey)
	}
	if err := keycrypto.VerifySignature(h.srv.VerificationKeys().Keys, a.signed()); err != nil {
		t.Fatalf("signature does not verify with the published keys: %v", err)
	}
	userID := h.inspect.Keys(t)[0].UserID
	binding := keycrypto.Binding{
		Fields: []string{"external_customer_id", "external_package_id", "user_id", "key_id", "key_fingerprint", "pulled_by_id", "pulled_by_type"},
		Values: map[string]string{
			"external_customer_id": "org-123",
			"external_package_id":  "pkg-456",
			"user_id":              userID,
			"key_id":               a.KeyID,
			"key_fingerprint":      pub.Fingerprint(),
			"pulled_by_id":         "dev-partner",
			"pulled_by_type":       "api_key",
		},
	}
	if err := keycrypto.CheckBinding(a.signed(), binding); err != nil {
		t.Fatalf("binding: %v\npayload: %s", err, a.SignedPayload)
	}

	// Store a small encrypted payload with its plaintext checksum.
	plaintext := []byte("correct horse battery staple")
	data, checksum := seal(t, a.PublicKey, plaintext)
	resp := h.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
		"public_key": strings.ToUpper(a.PublicKey), // lookup is case-insensitive
		"data":       data, "checksum": checksum, "padding_type": "OAEP",
		"metadata": map[string]string{"description": "seed", "content_type": "text/plain", "original_filename": "seed.txt"},
	})
	var stored struct {
		BackupID   string            `json:"backup_id"`
		Checksum   string            `json:"checksum"`
		DataSize   int               `json:"data_size"`
		BackupType string            `json:"backup_type"`
		Metadata   map[string]string `json:"metadata"`
	}
	decodeStrict(t, resp, &stored)
	if stored.BackupType != "data" || stored.Checksum != checksum || stored.DataSize != keycrypto.CiphertextLen ||
		stored.Metadata["description"] != "seed" || stored.Metadata["stored_at"] == "" {
		t.Fatalf("secure/data answer: %s", resp.body)
	}

	// Upload a small encrypted file.
	fileBytes := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1000)
	body, ct := multipartBody(t, []formPart{
		{name: "public_key", value: a.PublicKey},
		{name: "file", filename: "backup.bin", contentType: "application/octet-stream", data: fileBytes},
		{name: "metadata", value: `{"description":"wallet file","original_filename":"backup.bin"}`},
	})
	resp = h.do(http.MethodPost, sandbox.PathSecureFile, sandbox.DevPartnerToken, ct, bytes.NewReader(body))
	var file struct {
		BackupID   string            `json:"backup_id"`
		BackupType string            `json:"backup_type"`
		Metadata   map[string]string `json:"metadata"`
	}
	decodeStrict(t, resp, &file)
	if file.BackupType != "file" || file.Metadata["original_filename"] != "backup.bin" || file.Metadata["stored_at"] == "" {
		t.Fatalf("secure/file answer: %s", resp.body)
	}

	// Both backups are filed against the key's customer and package.
	backups := h.inspect.Backups(t)
	if len(backups) != 2 {
		t.Fatalf("want 2 backups, got %+v", backups)
	}
	for _, b := range backups {
		if b.KeyID != a.KeyID || b.CustomerID != "org-123" || b.PackageID != "pkg-456" {
			t.Errorf("backup %s filed as key %s customer %s package %s", b.BackupID, b.KeyID, b.CustomerID, b.PackageID)
		}
	}
	if got := backups[1]; got.BackupID != file.BackupID || got.SizeBytes != int64(len(fileBytes)) || got.SHA256 != sha256Hex(fileBytes) {
		t.Errorf("file backup recorded as %+v", got)
	}
	if content := h.inspect.Content(t, file.BackupID); !bytes.Equal(content, fileBytes) {
		t.Fatalf("file content: %d bytes, want the %d sent", len(content), len(fileBytes))
	}

	// Recovery end to end: the enclave side decrypts the stored ciphertext.
	if got := h.inspect.Recover(t, stored.BackupID); !bytes.Equal(got, plaintext) {
		t.Fatalf("recovered %q, want %q", got, plaintext)
	}
	if data, _ := base64.StdEncoding.DecodeString(data); !bytes.Equal(h.inspect.Content(t, stored.BackupID), data) {
		t.Fatal("data backup content is not the ciphertext that was sent")
	}

	// Neither the token nor the plaintext ever reached the log.
	log := h.logs.String()
	for _, secret := range []string{sandbox.DevPartnerToken, string(plaintext), base64.StdEncoding.EncodeToString(plaintext)} {
		if strings.Contains(log, secret) {
			t.Errorf("log contains a secret %q", secret)
		}
	}
	if !slices.ContainsFunc(strings.Split(log, "\n"), func(l string) bool { return strings.Contains(l, stored.BackupID) }) {
		t.Errorf("log does not name the stored backup:\n%s", log)
	}
}
