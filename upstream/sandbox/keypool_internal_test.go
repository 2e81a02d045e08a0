package sandbox

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

// useGenerator swaps the pool's generator for the test (the real one costs
// ~0.7 s of CPU per key).
func useGenerator(t *testing.T, gen func() (*rsa.PrivateKey, error)) {
	t.Helper()
	old := generateRecoveryKey
	generateRecoveryKey = gen
	t.Cleanup(func() { generateRecoveryKey = old })
}

// waitPool blocks until the pool holds n keys; the deadline only turns a
// hang into a failure.
func waitPool(t *testing.T, p *keyPool, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		p.mu.Lock()
		have, changed := len(p.keys), p.changed
		p.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("pool has %d keys, want %d", have, n)
		}
	}
}

func assignOverHTTP(t *testing.T, url, user string) string {
	t.Helper()
	body := `{"user_identifier":"` + user + `","key_type":"rsa4096","key_environment":"HOT",` +
		`"organisation":{"customer_id":"c","customer_name":"C"},"package":{"package_id":"p","package_name":"P"}}`
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+PathAssignKey, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+DevPartnerToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("assign: %d %s", resp.StatusCode, data)
	}
	var out struct {
		PublicKey string `json:"public_key"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out.PublicKey
}

func poolFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, poolDirName))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestKeyPool: the pool fills itself in the background, persists its keys,
// hands each out once, refills, survives a restart (serving without
// generating), and drops a pool key a crash left behind after assignment.
func TestKeyPool(t *testing.T) {
	useGenerator(t, testkeys.NewRSASource())
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	s, err := New(Config{DataDir: dir, PoolSize: 2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	waitPool(t, s.pool, 2)
	if files := poolFiles(t, dir); len(files) != 2 {
		t.Fatalf("pool dir holds %v, want 2 keys", files)
	}
	hs := httptest.NewServer(s)
	seen := map[string]bool{}
	for _, user := range []string{"u1", "u2", "u3"} {
		pub := assignOverHTTP(t, hs.URL, user)
		if seen[pub] {
			t.Fatal("the pool handed out a key twice")
		}
		seen[pub] = true
	}
	waitPool(t, s.pool, 2)
	hs.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files := poolFiles(t, dir)
	if len(files) != 2 {
		t.Fatalf("pool dir after refill holds %v, want 2 keys", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, poolDirName, f))
		if err != nil {
			t.Fatal(err)
		}
		priv, err := parseRSAPrivatePEM(data)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := keycrypto.PublicKeyFromPrivate(priv)
		if seen[pub.Hex()] {
			t.Fatal("an assigned key is still in the pool dir")
		}
	}

	// A crash after assignment but before the pool file was removed: the
	// assigned key's file is back in the pool dir.
	var assignedPEM []byte
	for _, k := range s.store.listKeys() {
		assignedPEM = []byte(k.PrivateKeyPEM)
		break
	}
	if err := os.WriteFile(filepath.Join(dir, poolDirName, "leftover.pem"), assignedPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	// Restart with a generator that cannot make keys: the two persisted pool
	// keys serve the next assignments; the leftover is dropped.
	useGenerator(t, func() (*rsa.PrivateKey, error) { return nil, errors.New("no entropy today") })
	s, err = New(Config{DataDir: dir, PoolSize: 2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.pool.available(); got != 2 {
		t.Fatalf("restarted pool has %d keys, want the 2 persisted ones", got)
	}
	hs = httptest.NewServer(s)
	defer hs.Close()
	for _, user := range []string{"u4", "u5"} {
		if pub := assignOverHTTP(t, hs.URL, user); seen[pub] {
			t.Fatal("restarted pool handed out an assigned key")
		}
	}
}
