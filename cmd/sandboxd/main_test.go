package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// readBanner reads sandboxd's first stdout line and returns the base URL
// it announces.
func readBanner(t *testing.T, stdout *bufio.Reader) string {
	t.Helper()
	line, err := stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the listen banner: %v", err)
	}
	const prefix = "sandboxd listening on "
	if !strings.HasPrefix(line, prefix) {
		t.Fatalf("first line %q does not announce the address", line)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, prefix))
}

func call(t *testing.T, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// TestRunWalk runs main's run function on a free loopback port and walks
// health → assign → secure/data with the development token, then shuts it
// down through its context.
func TestRunWalk(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr sandboxtest.LogBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, pw, &stderr,
			hooks{keySource: testkeys.NewRSASource()})
		pw.Close()
	}()
	stdout := bufio.NewReader(pr)
	base := readBanner(t, stdout)
	tokens, err := stdout.ReadString('\n')
	if err != nil || !strings.Contains(tokens, sandbox.DevPartnerToken) || !strings.Contains(tokens, sandbox.DevNoScopeToken) {
		t.Fatalf("dev tokens line %q (%v)", tokens, err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	if status, body := call(t, http.MethodGet, base+sandbox.PathHealth, "", nil); status != http.StatusOK {
		t.Fatalf("health: %d %s", status, body)
	}
	status, body := call(t, http.MethodPost, base+sandbox.PathAssignKey, sandbox.DevPartnerToken, map[string]any{
		"user_identifier": "alice@acme.io", "key_type": "rsa4096", "key_environment": "HOT",
		"organisation": map[string]string{"customer_id": "org-123", "customer_name": "Acme"},
		"package":      map[string]string{"package_id": "pkg-456", "package_name": "Main"},
	})
	if status != http.StatusOK {
		t.Fatalf("assign: %d %s", status, body)
	}
	var a struct {
		PublicKey string `json:"public_key"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	pub, err := keycrypto.ParsePublicKeyHex(a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte("recovery material")
	ct, err := keycrypto.Encrypt(rand.Reader, pub, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	status, body = call(t, http.MethodPost, base+sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
		"public_key": a.PublicKey, "data": base64.StdEncoding.EncodeToString(ct), "checksum": keycrypto.Checksum(plaintext)})
	if status != http.StatusOK || !strings.Contains(string(body), `"backup_type":"data"`) {
		t.Fatalf("secure/data: %d %s", status, body)
	}
	// The inspection API of the running sandboxd shows it filed.
	if backups := sandboxtest.NewClient(base, nil).Backups(t); len(backups) != 1 || backups[0].BackupType != sandbox.BackupTypeData ||
		backups[0].CustomerID != "org-123" || backups[0].Checksum != keycrypto.Checksum(plaintext) {
		t.Fatalf("sandboxd holds %+v; want the one data backup for org-123", backups)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
	logs := stderr.String()
	if !strings.Contains(logs, `"msg":"sandbox request"`) || !strings.Contains(logs, `"msg":"sandboxd shutting down"`) {
		t.Fatalf("stderr lacks the JSON request and shutdown logs:\n%s", logs)
	}
	if strings.Contains(logs, sandbox.DevPartnerToken) || strings.Contains(logs, string(plaintext)) {
		t.Fatal("a token or the plaintext reached the log")
	}
}

// TestFlags rejects bad command lines with a message, before serving.
func TestFlags(t *testing.T) {
	cases := map[string][]string{
		"unknown flag":        {"--port", "80"},
		"stray argument":      {"serve"},
		"zero file limit":     {"--max-file-bytes", "0"},
		"negative rate":       {"--rate-limit", "-1"},
		"zero pool":           {"--pool-size", "0"},
		"bad log level":       {"--log-level", "loud"},
		"unknown misbehave":   {"--misbehave", "flaky", "--listen", "127.0.0.1:0"},
		"missing tokens file": {"--tokens-file", filepath.Join(t.TempDir(), "none.json"), "--listen", "127.0.0.1:0"},
		"unusable listen":     {"--listen", "not-an-address"},
		"unknown fault":       {"--faults", "504=0.1"},
		"fault over 1":        {"--faults", "503=0.7,500=0.7"},
		"zero fault delay":    {"--fault-delay", "0s"},
		"negative latency":    {"--latency", "-1s"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			var stderr sandboxtest.LogBuffer
			err := run(context.Background(), args, io.Discard, &stderr, hooks{keySource: testkeys.NewRSASource()})
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if err := run(context.Background(), []string{"--help"}, io.Discard, io.Discard, hooks{}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
}

// TestFaultFlags: --faults and --fault-seed reach the emulator: every
// assignment answers the injected 503, the JWKS still answers, and the
// inspection API counts what was injected.
func TestFaultFlags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--faults", "503=1", "--fault-seed", "7", "--latency", "1ms"}, pw, io.Discard,
			hooks{keySource: testkeys.NewRSASource()})
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	stdout := bufio.NewReader(pr)
	base := readBanner(t, stdout)
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	for range 3 {
		if status, _ := call(t, http.MethodPost, base+sandbox.PathAssignKey, sandbox.DevPartnerToken, map[string]any{}); status != http.StatusServiceUnavailable {
			t.Fatalf("assign under --faults 503=1: %d, want 503", status)
		}
	}
	if status, _ := call(t, http.MethodGet, base+sandbox.PathJWKS, "", nil); status != http.StatusOK {
		t.Fatalf("jwks under faults: %d", status)
	}
	status, body := call(t, http.MethodGet, base+sandbox.PathInspectFaults, "", nil)
	var counts sandbox.FaultCounts
	if err := json.Unmarshal(body, &counts); status != http.StatusOK || err != nil {
		t.Fatalf("faults: %d %v", status, err)
	}
	if counts.Requests != 3 || counts.Injected[sandbox.Fault503] != 3 {
		t.Errorf("fault counts = %+v, want 3 requests, 3 injected 503s", counts)
	}
}

// TestBinary builds the real sandboxd, starts it on a free loopback port,
// checks it serves, and stops it with SIGTERM: a graceful exit 0.
func TestBinary(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build sandboxd: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "sandboxd")
	build := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// One pool key keeps the background RSA generation this test causes to
	// about a second of CPU.
	cmd := exec.CommandContext(t.Context(), bin, "--listen", "127.0.0.1:0", "--pool-size", "1", "--log-level", "debug")
	stdoutPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr sandboxtest.LogBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	stdout := bufio.NewReader(stdoutPipe)
	base := readBanner(t, stdout)
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	if status, _ := call(t, http.MethodGet, base+sandbox.PathHealth, "", nil); status != http.StatusOK {
		t.Fatalf("health: %d", status)
	}
	status, body := call(t, http.MethodGet, base+sandbox.PathJWKS, "", nil)
	if _, err := keycrypto.ParseJWKS(body); status != http.StatusOK || err != nil {
		t.Fatalf("jwks: %d %v", status, err)
	}
	if status, _ := call(t, http.MethodPost, base+sandbox.PathAssignKey, "", map[string]any{}); status != http.StatusUnauthorized {
		t.Fatalf("assign without a token: %d", status)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("sandboxd exited with %v after SIGTERM\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("sandboxd did not exit after SIGTERM\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `"msg":"sandboxd shutting down"`) {
		t.Fatalf("no shutdown log:\n%s", stderr.String())
	}
	_ = os.Remove(bin)
}

// TestTestKeysFlag: with --test-keys the first assignments get the
// committed test keys, in order, so a soak run waits for no RSA generation.
func TestTestKeysFlag(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		// hooks{}: the flag, not a test hook, must choose the keys.
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--test-keys"}, pw, io.Discard, hooks{})
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	stdout := bufio.NewReader(pr)
	base := readBanner(t, stdout)
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	for i, user := range []string{"alice@acme.io", "bob@acme.io"} {
		status, body := call(t, http.MethodPost, base+sandbox.PathAssignKey, sandbox.DevPartnerToken, map[string]any{
			"user_identifier": user, "key_type": "rsa4096", "key_environment": "HOT",
			"organisation": map[string]string{"customer_id": "org-123", "customer_name": "Acme"},
			"package":      map[string]string{"package_id": "pkg-456", "package_name": "Main"},
		})
		if status != http.StatusOK {
			t.Fatalf("assign %s: %d %s", user, status, body)
		}
		var a struct {
			PublicKey string `json:"public_key"`
		}
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatal(err)
		}
		pub, err := keycrypto.ParsePublicKeyHex(a.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if !pub.RSA.Equal(testkeys.RSA(i).Public()) {
			t.Errorf("assignment %d (%s) got a key that is not testkeys.RSA(%d)", i, user, i)
		}
	}
}
