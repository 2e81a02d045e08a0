package sandboxtest_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// post sends a partner request with the development token and requires a 200.
func post(t *testing.T, sb *sandboxtest.Sandbox, path string, body any, out any) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, sb.URL+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sandbox.DevPartnerToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := sb.HTTP.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: status %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// TestStartAndInspect: a started sandbox serves the partner endpoints, and
// the Client sees what they stored, in the handler's own types, through
// recovery and content; its log is in Logs.
func TestStartAndInspect(t *testing.T) {
	sb := sandboxtest.Start(t, sandboxtest.Options{})
	var key struct {
		KeyID     string `json:"key_id"`
		PublicKey string `json:"public_key"`
	}
	post(t, sb, sandbox.PathAssignKey, map[string]any{
		"user_identifier": "alice@acme.io", "key_type": "rsa4096", "key_environment": "COLD",
		"organisation": map[string]string{"customer_id": "org-123", "customer_name": "Acme"},
		"package":      map[string]string{"package_id": "pkg-456", "package_name": "Main"},
	}, &key)
	pub, err := keycrypto.ParsePublicKeyHex(key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("abandon ability able about above absent")
	ct, err := keycrypto.Encrypt(rand.Reader, pub, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	var stored struct {
		BackupID string `json:"backup_id"`
	}
	post(t, sb, sandbox.PathSecureData, map[string]any{"public_key": key.PublicKey,
		"data": base64.StdEncoding.EncodeToString(ct), "checksum": keycrypto.Checksum(plaintext),
		"metadata": map[string]string{"description": "seed phrase"}}, &stored)

	keys := sb.Inspect.Keys(t)
	if len(keys) != 1 || keys[0].KeyID != key.KeyID || keys[0].CustomerID != "org-123" || keys[0].KeyEnvironment != "COLD" {
		t.Errorf("Keys = %+v; want the one key assigned for org-123, COLD", keys)
	}
	backups := sb.Inspect.Backups(t)
	if len(backups) != 1 || backups[0].BackupID != stored.BackupID || backups[0].KeyID != key.KeyID ||
		backups[0].Metadata.Description != "seed phrase" || backups[0].Checksum != keycrypto.Checksum(plaintext) {
		t.Errorf("Backups = %+v; want the one data backup stored", backups)
	}
	if got := sb.Inspect.Recover(t, stored.BackupID); !bytes.Equal(got, plaintext) {
		t.Errorf("Recover = %q, want %q", got, plaintext)
	}
	if got := sb.Inspect.Content(t, stored.BackupID); !bytes.Equal(got, ct) {
		t.Error("Content is not the ciphertext sent")
	}
	if pem := sb.Inspect.PrivateKeyPEM(t, key.KeyID); !bytes.HasPrefix(pem, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("PrivateKeyPEM = %.40q…", pem)
	}
	line := sb.Logs.WaitFor(t, "path="+sandbox.PathSecureData, "status=200")
	if strings.Contains(sb.Logs.String(), sandbox.DevPartnerToken) || strings.Contains(line, string(plaintext)) {
		t.Error("the token or the plaintext reached the emulator's log")
	}
}

// TestStartWrapsAndServesTLS: Wrap sees the requests, and TLS serves
// https:// that the sandbox's own client trusts.
func TestStartWrapsAndServesTLS(t *testing.T) {
	var seen sync.Map
	sb := sandboxtest.Start(t, sandboxtest.Options{TLS: true, Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.Store(r.URL.Path, true)
			h.ServeHTTP(w, r)
		})
	}})
	if !strings.HasPrefix(sb.URL, "https://") {
		t.Fatalf("URL = %q, want https://", sb.URL)
	}
	if keys := sb.Inspect.Keys(t); len(keys) != 0 {
		t.Errorf("a new sandbox holds %d keys", len(keys))
	}
	if _, ok := seen.Load(sandbox.PathInspectKeys); !ok {
		t.Error("Wrap did not see the inspection request")
	}
}

// TestLogBufferConcurrent: writers on many goroutines lose nothing, a
// waiter wakes for the line it waits for, and Mirror gets every byte.
func TestLogBufferConcurrent(t *testing.T) {
	var mirror bytes.Buffer
	var mirrorMu sync.Mutex
	logs := &sandboxtest.LogBuffer{Mirror: writerFunc(func(p []byte) (int, error) {
		mirrorMu.Lock()
		defer mirrorMu.Unlock()
		return mirror.Write(p)
	})}
	log := logs.Logger()
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				log.Debug("line", "writer", w, "i", i)
			}
		})
	}
	got := logs.WaitCount(t, writers*each, "msg=line")
	wg.Wait()
	if len(got) != writers*each {
		t.Errorf("%d lines, want %d", len(got), writers*each)
	}
	if last := logs.WaitFor(t, fmt.Sprintf("writer=%d", writers-1), fmt.Sprintf("i=%d", each-1)); !strings.Contains(last, "level=DEBUG") {
		t.Errorf("line %q is not the text handler's, at debug level", last)
	}
	mirrorMu.Lock()
	defer mirrorMu.Unlock()
	if mirror.String() != logs.String() {
		t.Error("Mirror did not get every write")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestOnlyTestsImportThisPackage keeps the promise of the package doc: no
// production package of the module imports sandboxtest (go list's Imports
// leave out _test.go files).
func TestOnlyTestsImportThisPackage(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list the module's imports: %v", err)
	}
	const self = "github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
	out, err := exec.CommandContext(t.Context(), goBin, "list", "-f",
		`{{range .Imports}}{{$.ImportPath}} {{.}}{{"\n"}}{{end}}`, "github.com/walletprovider/recoveryservice/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	if !strings.Contains(string(out), "github.com/walletprovider/recoveryservice/upstream/sandbox ") {
		t.Fatalf("go list listed no imports of the module's packages:\n%.500s", out)
	}
	for line := range strings.Lines(string(out)) {
		if importer, imported, _ := strings.Cut(strings.TrimSpace(line), " "); imported == self {
			t.Errorf("%s imports %s; only _test.go files may", importer, self)
		}
	}
}

// TestWatch: a Watch sees each request to its path arrive, closes Read
// once enough of a body was read, and reports each answer's status;
// requests to other paths pass unseen.
func TestWatch(t *testing.T) {
	w := sandboxtest.NewWatch(sandbox.PathSecureData, 8)
	sb := sandboxtest.Start(t, sandboxtest.Options{Wrap: w.Wrap})
	post := func(path, body string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, sb.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+sandbox.DevPartnerToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := sb.HTTP.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	post(sandbox.PathAssignKey, `{}`)
	select {
	case <-w.Arrived():
		t.Fatal("a request to another path was seen")
	default:
	}
	post(sandbox.PathSecureData, `{"public_key":"not hex"}`)
	<-w.Arrived()
	<-w.Read()
	if code := w.NextEnd(t); code != http.StatusBadRequest {
		t.Errorf("NextEnd = %d, want the emulator's 400", code)
	}
}
