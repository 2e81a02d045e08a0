package sandboxtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// requestTimeout bounds one inspection request, so a stuck emulator fails
// the test instead of hanging it.
const requestTimeout = 30 * time.Second

// maxBody bounds what the client reads of one answer: far more than a test
// stores (a backup's content is at most the emulator's file limit).
const maxBody = 64 << 20

// Client reads an emulator's inspection endpoints (no token needed): what
// the "enclave" holds, a backup's bytes, a recovery. It decodes into the
// types the handler writes, refusing unknown fields, so the wire format has
// one definition. Every method fails the test on an error or a non-200.
type Client struct {
	baseURL string
	http    *http.Client
}

// NewClient reads the emulator at baseURL (an httptest server's URL, or a
// sandboxd's) with hc; nil means http.DefaultClient.
func NewClient(baseURL string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{baseURL: baseURL, http: hc}
}

// Keys lists every assigned key, oldest first.
func (c *Client) Keys(t testing.TB) []sandbox.InspectedKey {
	t.Helper()
	var body sandbox.InspectedKeys
	c.decode(t, http.MethodGet, sandbox.PathInspectKeys, &body)
	return body.Keys
}

// Backups lists every stored backup, oldest first.
func (c *Client) Backups(t testing.TB) []sandbox.InspectedBackup {
	t.Helper()
	var body sandbox.InspectedBackups
	c.decode(t, http.MethodGet, sandbox.PathInspectBackups, &body)
	return body.Backups
}

// Content is a backup's bytes as stored (the ciphertext or the file).
func (c *Client) Content(t testing.TB, backupID string) []byte {
	t.Helper()
	return c.get(t, http.MethodGet, sandbox.PathInspectBackups+"/"+backupID+"/content")
}

// Recover decrypts a data backup with its key's private half: the
// emulator's recovery, end to end.
func (c *Client) Recover(t testing.TB, backupID string) []byte {
	t.Helper()
	var body sandbox.Recovered
	c.decode(t, http.MethodPost, sandbox.PathInspectBackups+"/"+backupID+"/recover", &body)
	return body.Plaintext
}

// Faults counts the partner requests and the faults injected into them.
func (c *Client) Faults(t testing.TB) sandbox.FaultCounts {
	t.Helper()
	var body sandbox.FaultCounts
	c.decode(t, http.MethodGet, sandbox.PathInspectFaults, &body)
	return body
}

// PrivateKeyPEM is an assigned key's private half (PKCS#8 PEM), for
// checking another crypto implementation against the emulator.
func (c *Client) PrivateKeyPEM(t testing.TB, keyID string) []byte {
	t.Helper()
	return c.get(t, http.MethodGet, sandbox.PathInspectKeys+"/"+keyID+"/private-key")
}

// decode requires a 200 whose JSON body fits v exactly.
func (c *Client) decode(t testing.TB, method, path string, v any) {
	t.Helper()
	body := c.get(t, method, path)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s %s: decoding %T: %v\n%s", method, path, v, err, body)
	}
}

// get sends one request and requires a 200.
func (c *Client) get(t testing.TB, method, path string) []byte {
	t.Helper()
	body, err := c.do(method, path)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func (c *Client) do(method, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, body)
	}
	return body, nil
}
