package sandbox_test

import (
	"bytes"
	"encoding/base64"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestPersistence restarts the emulator on the same data dir: keys (with
// their private halves), user ids, backups and their bytes, and the signing
// key all survive; the exactly-once rule still holds; everything on disk is
// owner-only and holds no plaintext.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	source := testkeys.NewRSASource() // one source across restarts: it never repeats a key
	cfg := sandbox.Config{DataDir: dir, KeySource: source}

	first := start(t, cfg)
	a := first.assign(assignRequest("alice", "org-1", "user_id", "key_id"))
	plaintext := []byte("persist me, but never in the clear")
	data, checksum := seal(t, a.PublicKey, plaintext)
	resp := first.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
		"public_key": a.PublicKey, "data": data, "checksum": checksum})
	if resp.status != http.StatusOK {
		t.Fatalf("secure/data: %d %s", resp.status, resp.body)
	}
	fileBytes := []byte("encrypted file bytes")
	body, ct := multipartBody(t, []formPart{{name: "public_key", value: a.PublicKey},
		{name: "file", filename: "f.bin", contentType: "application/octet-stream", data: fileBytes}})
	if resp := first.do(http.MethodPost, sandbox.PathSecureFile, sandbox.DevPartnerToken, ct, bytes.NewReader(body)); resp.status != http.StatusOK {
		t.Fatalf("secure/file: %d %s", resp.status, resp.body)
	}
	keysBefore, backupsBefore := first.inspect.Keys(t), first.inspect.Backups(t)
	jwksBefore := first.do(http.MethodGet, sandbox.PathJWKS, "", "", nil).body
	first.http.Close()
	if err := first.srv.Close(); err != nil {
		t.Fatal(err)
	}

	// File modes and no plaintext on disk.
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, info.Mode().Perm(), want)
		}
		if !d.IsDir() {
			content, err := os.ReadFile(path) //nolint:gosec // G122: the walk is over this test's own t.TempDir()
			if err != nil {
				return err
			}
			if bytes.Contains(content, plaintext) || bytes.Contains(content, []byte(base64.StdEncoding.EncodeToString(plaintext))) {
				t.Errorf("%s holds the plaintext", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	second := start(t, cfg)
	if got := second.inspect.Keys(t); !slices.Equal(got, keysBefore) {
		t.Fatalf("keys after restart:\n%+v\nwant\n%+v", got, keysBefore)
	}
	if got := second.inspect.Backups(t); !reflect.DeepEqual(got, backupsBefore) {
		t.Fatalf("backups after restart:\n%+v\nwant\n%+v", got, backupsBefore)
	}
	if got := second.do(http.MethodGet, sandbox.PathJWKS, "", "", nil).body; !bytes.Equal(got, jwksBefore) {
		t.Fatalf("signing key changed across restart:\n%s\n%s", got, jwksBefore)
	}
	if err := keycrypto.VerifySignature(second.srv.VerificationKeys().Keys, a.signed()); err != nil {
		t.Fatalf("pre-restart signature no longer verifies: %v", err)
	}
	// The private key survived: the data backup still recovers.
	rec := second.do(http.MethodPost, sandbox.PathInspectBackups+"/"+backupsBefore[0].BackupID+"/recover", "", "", nil)
	if rec.status != http.StatusOK || !strings.Contains(string(rec.body), base64.StdEncoding.EncodeToString(plaintext)) {
		t.Fatalf("recover after restart: %d %s", rec.status, rec.body)
	}
	if got := second.do(http.MethodGet, sandbox.PathInspectBackups+"/"+backupsBefore[1].BackupID+"/content", "", "", nil); !bytes.Equal(got.body, fileBytes) {
		t.Fatalf("file content after restart: %q", got.body)
	}
	// Exactly-once survives the restart; the user id is kept.
	if resp := second.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, assignRequest("alice", "org-1")); resp.status != http.StatusConflict {
		t.Fatalf("duplicate after restart: %d", resp.status)
	}
	// A stored key still accepts data after the restart.
	data2, checksum2 := seal(t, a.PublicKey, []byte("after restart"))
	if resp := second.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
		"public_key": a.PublicKey, "data": data2, "checksum": checksum2}); resp.status != http.StatusOK {
		t.Fatalf("secure/data after restart: %d %s", resp.status, resp.body)
	}
}

// TestDataDirLeftovers: staged uploads and unrecorded contents a crash left
// behind are removed at start, and a corrupt state file is refused.
func TestDataDirLeftovers(t *testing.T) {
	dir := t.TempDir()
	h := start(t, sandbox.Config{DataDir: dir})
	h.http.Close()
	h.srv.Close()
	for _, p := range []string{"uploads/upload-123", "backups/0b0e7d3c-6bde-4a5b-9f8e-2e7b0c1d2e3f"} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h = start(t, sandbox.Config{DataDir: dir})
	assertNothingStored(t, h)
	h.http.Close()
	h.srv.Close()

	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sandbox.New(sandbox.Config{DataDir: dir, KeySource: testkeys.NewRSASource()}); err == nil {
		t.Fatal("New accepted a corrupt state file")
	}
}
