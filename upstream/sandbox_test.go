package upstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// emulator is the real sandbox behind a real loopback HTTP server. Most
// tests get one from startSandbox; secure_file_test.go also builds one
// around its own wrapped handler.
type emulator struct {
	srv  *sandbox.Server
	http *httptest.Server
}

// startSandbox starts the emulator for the test (sandboxtest.Start: the
// committed test keys, so no RSA key is generated) and returns it with a
// client using the development partner token.
func startSandbox(t *testing.T, cfg sandbox.Config) (*emulator, *Client) {
	t.Helper()
	sb := sandboxtest.Start(t, sandboxtest.Options{Config: cfg})
	e := &emulator{srv: sb.Server, http: sb.HTTP}
	return e, e.client(t, sandbox.DevPartnerToken)
}

// client builds an adapter client for the emulator with the given token.
func (e *emulator) client(t *testing.T, token string, mutate ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{BaseURL: e.http.URL, Token: token, AllowHTTP: true,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// backups lists what the emulator holds, through its inspection endpoint.
func (e *emulator) backups(t *testing.T) []sandbox.InspectedBackup {
	t.Helper()
	return sandboxtest.NewClient(e.http.URL, e.http.Client()).Backups(t)
}

// assignTestKey assigns a key for user in org-123/pkg-456.
func assignTestKey(t *testing.T, c *Client, user string) *AssignKeyResponse {
	t.Helper()
	req := validAssign()
	req.UserIdentifier = user
	resp, err := c.AssignKey(context.Background(), req)
	if err != nil {
		t.Fatalf("AssignKey(%s): %v", user, err)
	}
	return resp
}

// sealed encrypts plaintext to the key the way the service does.
func sealed(t *testing.T, publicKeyHex string, plaintext []byte) ([]byte, string) {
	t.Helper()
	pub, err := keycrypto.ParsePublicKeyHex(publicKeyHex)
	if err != nil {
		t.Fatalf("ParsePublicKeyHex: %v", err)
	}
	ct, err := keycrypto.Encrypt(rand.Reader, pub, plaintext)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return ct, keycrypto.Checksum(plaintext)
}

// TestSandboxHappyPath walks the contract end to end against the emulator:
// assign with a bound signature that verifies against the emulator's keys,
// store data and a file, and find both filed against the right customer.
func TestSandboxHappyPath(t *testing.T) {
	emu, c := startSandbox(t, sandbox.Config{})
	ctx := context.Background()

	req := validAssign()
	req.SignWith = []string{"external_customer_id", "external_package_id", "key_id", "key_fingerprint"}
	key, err := c.AssignKey(ctx, req)
	if err != nil {
		t.Fatalf("AssignKey: %v", err)
	}
	pub, err := keycrypto.ParsePublicKeyHex(key.PublicKey)
	if err != nil {
		t.Fatalf("assigned public key: %v", err)
	}
	if key.CustomerID != req.CustomerID || key.PackageID != req.PackageID || key.CustomerName != req.CustomerName || key.PackageName != req.PackageName {
		t.Errorf("response context = %+v, want the request's organisation and package", key)
	}
	keys := emu.srv.VerificationKeys().Eligible(time.Now())
	if err := keycrypto.VerifySignature(keys, key.SignedAssignment()); err != nil {
		t.Fatalf("VerifySignature: %v", err)
	}
	binding := keycrypto.Binding{Fields: req.SignWith, Values: map[string]string{
		"external_customer_id": req.CustomerID, "external_package_id": req.PackageID,
		"key_id": key.KeyID, "key_fingerprint": pub.Fingerprint(),
	}}
	if err := keycrypto.CheckBinding(key.SignedAssignment(), binding); err != nil {
		t.Fatalf("CheckBinding: %v", err)
	}

	plaintext := []byte("correct horse battery staple seed words")
	ct, checksum := sealed(t, key.PublicKey, plaintext)
	md := Metadata{Description: "seed", ContentType: "text/plain", OriginalFilename: "seed.txt"}
	data, err := c.SecureData(ctx, SecureDataRequest{PublicKey: key.PublicKey, Ciphertext: ct, Checksum: checksum, Metadata: md})
	if err != nil {
		t.Fatalf("SecureData: %v", err)
	}
	if data.BackupID == "" || data.Checksum != checksum || data.DataSize != int64(len(ct)) || data.BackupType != "data" ||
		data.Metadata != md || data.StoredAt.IsZero() {
		t.Errorf("SecureData = %+v", data)
	}

	fileBytes := bytes.Repeat([]byte("encrypted-archive "), 5000)
	fmd := Metadata{Description: "wallet file", OriginalFilename: "wallet.bin.enc"}
	file, err := c.SecureFile(ctx, SecureFileRequest{PublicKey: key.PublicKey, Metadata: fmd, File: bytes.NewReader(fileBytes)})
	if err != nil {
		t.Fatalf("SecureFile: %v", err)
	}
	if file.BackupID == "" || file.BackupType != "file" || file.Metadata != fmd || file.StoredAt.IsZero() {
		t.Errorf("SecureFile = %+v", file)
	}

	fileSum := sha256.Sum256(fileBytes)
	want := map[string]sandbox.InspectedBackup{
		data.BackupID: {BackupID: data.BackupID, BackupType: "data", KeyID: key.KeyID, CustomerID: "org-123", PackageID: "pkg-456", Checksum: checksum},
		file.BackupID: {BackupID: file.BackupID, BackupType: "file", KeyID: key.KeyID, CustomerID: "org-123", PackageID: "pkg-456",
			SizeBytes: int64(len(fileBytes)), SHA256: hex.EncodeToString(fileSum[:])},
	}
	got := emu.backups(t)
	if len(got) != 2 {
		t.Fatalf("emulator holds %d backups, want 2: %+v", len(got), got)
	}
	for _, b := range got {
		w, ok := want[b.BackupID]
		if !ok {
			t.Fatalf("unexpected backup %+v", b)
		}
		if b.BackupType != w.BackupType || b.KeyID != w.KeyID || b.CustomerID != w.CustomerID || b.PackageID != w.PackageID {
			t.Errorf("backup %+v, want filed as %+v", b, w)
		}
		if w.BackupType == "data" && b.Checksum != w.Checksum {
			t.Errorf("data backup checksum %q, want %q", b.Checksum, w.Checksum)
		}
		if w.BackupType == "file" && (b.SizeBytes != w.SizeBytes || b.SHA256 != w.SHA256) {
			t.Errorf("file backup size %d sha256 %s, want %d %s", b.SizeBytes, b.SHA256, w.SizeBytes, w.SHA256)
		}
	}
}

// TestSandboxStatuses maps every failure status the emulator produces.
func TestSandboxStatuses(t *testing.T) {
	ctx := context.Background()
	emu, c := startSandbox(t, sandbox.Config{MaxFileBytes: 64 << 10})
	key := assignTestKey(t, c, "status-user")
	ct, checksum := sealed(t, key.PublicKey, []byte("secret"))
	unknownKey := strings.Repeat("ab", 40)

	// forceContentType rewrites the multipart Content-Type on its way out,
	// the only way to make the emulator answer 415 to this client.
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	forceContentType := func(cfg *Config) {
		cfg.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r = r.Clone(r.Context())
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return base.RoundTrip(r)
		})
	}

	tests := []struct {
		name       string
		call       func() error
		wantKind   Kind
		wantIs     error
		wantStatus int
		wantField  string
		wantMsg    string
	}{
		{"401 bad token", func() error {
			_, err := emu.client(t, "not-a-token").AssignKey(ctx, validAssign())
			return err
		}, KindUnauthenticated, ErrUnauthenticated, 401, "", ""},
		{"403 no scope", func() error {
			_, err := emu.client(t, sandbox.DevNoScopeToken).SecureData(ctx, SecureDataRequest{PublicKey: key.PublicKey, Ciphertext: ct, Checksum: checksum})
			return err
		}, KindForbidden, ErrForbidden, 403, "", ""},
		{"404 data unknown key", func() error {
			_, err := c.SecureData(ctx, SecureDataRequest{PublicKey: unknownKey, Ciphertext: ct, Checksum: checksum})
			return err
		}, KindNotFound, ErrNotFound, 404, "", ""},
		{"404 file unknown key", func() error {
			_, err := c.SecureFile(ctx, SecureFileRequest{PublicKey: unknownKey, File: strings.NewReader("ciphertext")})
			return err
		}, KindNotFound, ErrNotFound, 404, "", ""},
		{"409 second assignment", func() error {
			req := validAssign()
			req.UserIdentifier = "status-user"
			req.KeyEnvironment = KeyEnvironmentHot
			_, err := c.AssignKey(ctx, req)
			return err
		}, KindAlreadyAssigned, ErrAlreadyAssigned, 409, "", "Key already assigned for this user and organisation"},
		{"400 malformed checksum", func() error {
			_, err := c.SecureData(ctx, SecureDataRequest{PublicKey: key.PublicKey, Ciphertext: ct, Checksum: "not-a-checksum"})
			return err
		}, KindInvalid, ErrInvalid, 400, "checksum", ""},
		{"400 checksum does not match plaintext", func() error {
			_, err := c.SecureData(ctx, SecureDataRequest{PublicKey: key.PublicKey, Ciphertext: ct, Checksum: keycrypto.Checksum([]byte("other"))})
			return err
		}, KindInvalid, ErrInvalid, 400, "", ""},
		{"400 unknown sign_with field", func() error {
			req := validAssign()
			req.UserIdentifier = "sign-with-user"
			req.SignWith = []string{"favourite_colour"}
			_, err := c.AssignKey(ctx, req)
			return err
		}, KindInvalid, ErrInvalid, 400, "sign_with", ""},
		{"413 file over the limit", func() error {
			_, err := c.SecureFile(ctx, SecureFileRequest{PublicKey: key.PublicKey, File: bytes.NewReader(make([]byte, 256<<10))})
			return err
		}, KindTooLarge, ErrTooLarge, 413, "", ""},
		{"415 not multipart", func() error {
			_, err := emu.client(t, sandbox.DevPartnerToken, forceContentType).SecureFile(ctx, SecureFileRequest{PublicKey: key.PublicKey, File: strings.NewReader("x")})
			return err
		}, KindUnsupportedMedia, ErrUnsupportedMedia, 415, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var uerr *Error
			if !errors.As(err, &uerr) {
				t.Fatalf("error = %v, want *Error", err)
			}
			if uerr.Kind != tt.wantKind || uerr.Status != tt.wantStatus || !errors.Is(err, tt.wantIs) || !uerr.Sent {
				t.Fatalf("error = %v (kind %v, status %d), want kind %v status %d", err, uerr.Kind, uerr.Status, tt.wantKind, tt.wantStatus)
			}
			if uerr.Type == "" || uerr.Message == "" {
				t.Errorf("Type %q Message %q: the emulator's ErrorResponse was not decoded", uerr.Type, uerr.Message)
			}
			if tt.wantField != "" && uerr.Fields[tt.wantField] == "" {
				t.Errorf("Fields = %v, want a problem on %q", uerr.Fields, tt.wantField)
			}
			if tt.wantMsg != "" && uerr.Message != tt.wantMsg {
				t.Errorf("Message = %q, want %q", uerr.Message, tt.wantMsg)
			}
			if strings.Contains(err.Error(), sandbox.DevPartnerToken) || strings.Contains(err.Error(), checksum) {
				t.Errorf("Error() %q leaks the token or request content", err)
			}
		})
	}
	if got := emu.backups(t); len(got) != 0 {
		t.Fatalf("failed calls stored %d backups: %+v", len(got), got)
	}
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// fakeClock is a settable clock shared by the emulator and the client's
// retry wait, so a Retry-After is "waited" without sleeping.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestSandboxRateLimit: the emulator's 429 carries Retry-After; a short
// one is waited out and retried, a long one goes back to the caller.
func TestSandboxRateLimit(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}

	t.Run("short wait retried", func(t *testing.T) {
		_, c := startSandbox(t, sandbox.Config{RateLimit: 1, RateBurst: 1, Now: clock.Now})
		var waits []time.Duration
		c.wait = func(_ context.Context, d time.Duration) error {
			waits = append(waits, d)
			clock.Advance(d)
			return nil
		}
		assignTestKey(t, c, "rate-user-1")
		assignTestKey(t, c, "rate-user-2") // limited once, then retried
		if len(waits) != 1 || waits[0] != time.Second {
			t.Fatalf("waits = %v, want one of 1s", waits)
		}
	})
	t.Run("long wait returned", func(t *testing.T) {
		_, c := startSandbox(t, sandbox.Config{RateLimit: 0.01, RateBurst: 1, Now: clock.Now})
		c.wait = func(context.Context, time.Duration) error {
			t.Error("a Retry-After over the limit must not be waited")
			return nil
		}
		assignTestKey(t, c, "rate-user-3")
		req := validAssign()
		req.UserIdentifier = "rate-user-4"
		_, err := c.AssignKey(ctx, req)
		var uerr *Error
		if !errors.As(err, &uerr) || uerr.Kind != KindRateLimited || !errors.Is(err, ErrRateLimited) || uerr.Status != 429 {
			t.Fatalf("error = %v, want KindRateLimited", err)
		}
		if uerr.RetryAfter != 100*time.Second {
			t.Fatalf("RetryAfter = %v, want 100s", uerr.RetryAfter)
		}
	})
}

// TestSandboxUnreachable: a refused connection is Unavailable and Sent is
// false, so the caller knows AssignKey assigned nothing.
func TestSandboxUnreachable(t *testing.T) {
	c := newTestClient(t, "http://"+closedAddr(t))
	c.wait = func(context.Context, time.Duration) error { return nil }
	_, err := c.AssignKey(context.Background(), validAssign())
	var uerr *Error
	if !errors.As(err, &uerr) || uerr.Kind != KindUnavailable || uerr.Sent || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error = %v, want KindUnavailable with Sent=false", err)
	}
}

func testKeySource() func() (*rsa.PrivateKey, error) { return testkeys.NewRSASource() }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
