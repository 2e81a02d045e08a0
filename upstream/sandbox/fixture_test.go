package sandbox_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// harness is a real emulator behind a real loopback HTTP server
// (sandboxtest.Start), with the requests these tests make of it.
type harness struct {
	t      *testing.T
	srv    *sandbox.Server
	http   *httptest.Server
	client *http.Client
	logs   *sandboxtest.LogBuffer
	// inspect reads the emulator's /sandbox/v1 endpoints.
	inspect *sandboxtest.Client
	// dataDir is Config.DataDir ("" in memory).
	dataDir string
}

// start runs sandbox.New(cfg) behind httptest, with the committed test keys
// unless the test set a KeySource, logging into h.logs unless it set a
// Logger.
func start(t *testing.T, cfg sandbox.Config) *harness {
	t.Helper()
	sb := sandboxtest.Start(t, sandboxtest.Options{Config: cfg})
	return &harness{t: t, srv: sb.Server, http: sb.HTTP, client: sb.HTTP.Client(), logs: sb.Logs, inspect: sb.Inspect,
		dataDir: cfg.DataDir}
}

// response is a completed HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
	// closed: the server asked to close the connection (net/http strips
	// "Connection: close" from header and reports it here).
	closed bool
}

// errorBody decodes the contract's ErrorResponse.
type errorBody struct {
	Error   string            `json:"error"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields"`
}

func (r response) errorBody(t *testing.T) errorBody {
	t.Helper()
	var e errorBody
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("body is not an ErrorResponse: %v\n%s", err, r.body)
	}
	if e.Error == "" || e.Message == "" {
		t.Fatalf("ErrorResponse lacks error or message: %s", r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type = %q, want application/json", ct)
	}
	return e
}

// do sends one request; token "" sends no Authorization header.
func (h *harness) do(method, path, token, contentType string, body io.Reader) response {
	h.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, h.http.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return h.send(req)
}

// send performs req and reads the whole answer.
func (h *harness) send(req *http.Request) response {
	h.t.Helper()
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data, closed: resp.Close}
}

// postJSON posts v (a string is sent verbatim) with the partner token.
func (h *harness) postJSON(path, token string, v any) response {
	h.t.Helper()
	var body []byte
	if s, ok := v.(string); ok {
		body = []byte(s)
	} else {
		var err error
		if body, err = json.Marshal(v); err != nil {
			h.t.Fatal(err)
		}
	}
	return h.do(http.MethodPost, path, token, "application/json", bytes.NewReader(body))
}

// assignRequest builds a valid assign-key body; mutate it per case.
func assignRequest(user, customer string, signWith ...string) map[string]any {
	req := map[string]any{
		"user_identifier": user,
		"key_type":        "rsa4096",
		"key_environment": "COLD",
		"organisation":    map[string]any{"customer_id": customer, "customer_name": "Acme Corp"},
		"package":         map[string]any{"package_id": "pkg-456", "package_name": "Main Workspace"},
	}
	if signWith != nil {
		req["sign_with"] = signWith
	}
	return req
}

// assigned is a decoded 200 assign-key body.
type assigned struct {
	KeyID         string   `json:"key_id"`
	PublicKey     string   `json:"public_key"`
	Signature     string   `json:"signature"`
	SignedPayload string   `json:"signed_payload"`
	SignedFields  []string `json:"signed_fields"`
	CustomerID    string   `json:"customer_id"`
	PackageID     string   `json:"package_id"`
	Metadata      struct {
		CustomerName string `json:"customer_name"`
		PackageName  string `json:"package_name"`
	} `json:"metadata"`
}

func (a assigned) signed() keycrypto.SignedAssignment {
	return keycrypto.SignedAssignment{PublicKeyHex: a.PublicKey, Signature: a.Signature,
		SignedPayload: a.SignedPayload, SignedFields: a.SignedFields}
}

// assign assigns a key and requires a 200.
func (h *harness) assign(req map[string]any) assigned {
	h.t.Helper()
	resp := h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, req)
	if resp.status != http.StatusOK {
		h.t.Fatalf("assign: status %d: %s", resp.status, resp.body)
	}
	var a assigned
	dec := json.NewDecoder(bytes.NewReader(resp.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		h.t.Fatalf("assign: %v\n%s", err, resp.body)
	}
	return a
}

// sealed is a ciphertext and its plaintext checksum, made with keycrypto
// as a client would.
func seal(t *testing.T, publicHex string, plaintext []byte) (data, checksum string) {
	t.Helper()
	pub, err := keycrypto.ParsePublicKeyHex(publicHex)
	if err != nil {
		t.Fatalf("ParsePublicKeyHex: %v", err)
	}
	ct, err := keycrypto.Encrypt(rand.Reader, pub, plaintext)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return b64(ct), keycrypto.Checksum(plaintext)
}

// decodeStrict requires a 200 JSON body that decodes into v with no unknown fields.
func decodeStrict(t *testing.T, resp response, v any) {
	t.Helper()
	if resp.status != http.StatusOK {
		t.Fatalf("status %d: %s", resp.status, resp.body)
	}
	dec := json.NewDecoder(bytes.NewReader(resp.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v\n%s", err, resp.body)
	}
}
