package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// assignOK is a minimal valid assign-key 200 body.
const assignOK = `{"key_id":"b1f7c0de-2a4c-4f1e-9c3a-8d2e6b5a1f04","public_key":"30820222","signature":"MEUCIQ=="}`

// assignSignedOK is a minimal valid reply to a request with sign_with.
const assignSignedOK = `{"key_id":"b1f7c0de-2a4c-4f1e-9c3a-8d2e6b5a1f04","public_key":"30820222","signature":"MEUCIQ==",` +
	`"signed_payload":"{\"key_id\":\"b1f7c0de-2a4c-4f1e-9c3a-8d2e6b5a1f04\",\"public_key\":\"30820222\"}","signed_fields":["key_id"]}`

// closedAddr returns a loopback address nothing listens on, so dialing it
// is refused before any byte is sent.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// refusingTransport dials a closed port for the first `refusals` dials and
// the real server afterwards: a real transport over real sockets whose
// first connections are really refused.
func refusingTransport(t *testing.T, refusals int, dials *atomic.Int32) *http.Transport {
	dead := closedAddr(t)
	var d net.Dialer
	return &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if int(dials.Add(1)) <= refusals {
				return d.DialContext(ctx, network, dead)
			}
			return d.DialContext(ctx, network, addr)
		},
	}
}

func TestRetryConnectionRefused(t *testing.T) {
	tests := []struct {
		name      string
		refusals  int
		wantErr   bool
		wantDials int32
	}{
		{"first two refused, third succeeds", 2, false, 3},
		{"always refused", 10, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				_, _ = io.WriteString(w, assignOK)
			}))
			defer srv.Close()
			var dials atomic.Int32
			c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.Transport = refusingTransport(t, tt.refusals, &dials) })
			var waits []time.Duration
			c.wait = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }

			resp, err := c.AssignKey(context.Background(), validAssign())
			if got := dials.Load(); got != tt.wantDials {
				t.Errorf("dials = %d, want %d", got, tt.wantDials)
			}
			// Full jitter: each wait is below its doubling ceiling.
			if len(waits) != 2 || waits[0] >= backoffBase || waits[1] >= 2*backoffBase {
				t.Errorf("waits = %v, want two under %v and %v", waits, backoffBase, 2*backoffBase)
			}
			if !tt.wantErr {
				if err != nil || resp.KeyID == "" || hits.Load() != 1 {
					t.Fatalf("AssignKey = %+v, %v (hits %d); want success after the refusals", resp, err, hits.Load())
				}
				return
			}
			var uerr *Error
			if !errors.As(err, &uerr) || uerr.Kind != KindUnavailable || uerr.Sent || uerr.Status != 0 {
				t.Fatalf("AssignKey error = %#v, want KindUnavailable with Sent=false", err)
			}
			if hits.Load() != 0 {
				t.Fatalf("server saw %d requests, want 0", hits.Load())
			}
		})
	}
}

func TestRetryRateLimited(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		limited    int // how many 429s before a 200
		wantHits   int32
		// wantWaits are the exact waits; nil checks only that there were
		// wantHits-1 of them, each a jittered backoff.
		wantWaits []time.Duration
		wantKind  Kind // KindUnknown = success
	}{
		{"short wait retried", "1", 2, 3, []time.Duration{time.Second, time.Second}, KindUnknown},
		{"gives up after two retries", "1", 5, 3, []time.Duration{time.Second, time.Second}, KindRateLimited},
		{"at the limit retried", "5", 1, 2, []time.Duration{5 * time.Second}, KindUnknown},
		{"long wait returned", "6", 1, 1, nil, KindRateLimited},
		{"no Retry-After: backoff", "", 1, 2, nil, KindUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if int(hits.Add(1)) <= tt.limited {
					if tt.retryAfter != "" {
						w.Header().Set("Retry-After", tt.retryAfter)
					}
					w.WriteHeader(http.StatusTooManyRequests)
					_, _ = io.WriteString(w, `{"error":"rate_limited","message":"slow down"}`)
					return
				}
				_, _ = io.WriteString(w, `{"backup_id":"0f6f7b39-3c55-4b7f-a7a4-2b0c3c8b9f11","backup_type":"data","checksum":"ab","data_size":512}`)
			}))
			defer srv.Close()
			c := newTestClient(t, srv.URL)
			var waits []time.Duration
			c.wait = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }

			resp, err := c.SecureData(context.Background(), SecureDataRequest{PublicKey: "3082", Ciphertext: []byte{1}, Checksum: "ab"})
			if hits.Load() != tt.wantHits {
				t.Errorf("hits = %d, want %d", hits.Load(), tt.wantHits)
			}
			switch {
			case tt.wantWaits != nil && fmt.Sprint(waits) != fmt.Sprint(tt.wantWaits):
				t.Errorf("waits = %v, want %v", waits, tt.wantWaits)
			case tt.wantWaits == nil && (len(waits) != int(tt.wantHits)-1 || len(waits) > 0 && waits[0] >= backoffBase):
				t.Errorf("waits = %v, want %d jittered backoffs", waits, tt.wantHits-1)
			}
			if tt.wantKind == KindUnknown {
				if err != nil || resp.BackupID == "" {
					t.Fatalf("SecureData = %+v, %v; want success", resp, err)
				}
				return
			}
			var uerr *Error
			if !errors.As(err, &uerr) || uerr.Kind != tt.wantKind {
				t.Fatalf("SecureData error = %v, want kind %v", err, tt.wantKind)
			}
		})
	}
}

// TestRetryRespectsDeadline: a 429 whose wait would outlive the call's
// deadline goes straight back to the caller.
func TestRetryRespectsDeadline(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	waited := false
	c.wait = func(context.Context, time.Duration) error { waited = true; return nil }
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := c.AssignKey(ctx, validAssign())
	if !errors.Is(err, ErrRateLimited) || hits.Load() != 1 || waited {
		t.Fatalf("err = %v, hits = %d, waited = %t; want the 429 back at once", err, hits.Load(), waited)
	}
}

// TestNoRetryAfterTimeout: a call that times out after reaching the
// upstream is an unknown outcome, never retried, and says so (Sent).
func TestNoRetryAfterTimeout(t *testing.T) {
	tests := []struct {
		name string
		call func(*Client) error
	}{
		{"AssignKey", func(c *Client) error { _, err := c.AssignKey(context.Background(), validAssign()); return err }},
		{"SecureData", func(c *Client) error {
			_, err := c.SecureData(context.Background(), SecureDataRequest{PublicKey: "3082", Ciphertext: []byte{1}, Checksum: "ab"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				_, _ = io.Copy(io.Discard, r.Body)
				select {
				case <-r.Context().Done():
				case <-release:
				}
			}))
			defer srv.Close()
			defer close(release)
			c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.CallTimeout = 200 * time.Millisecond })
			c.wait = func(context.Context, time.Duration) error {
				t.Error("a timed-out call must not wait to retry")
				return nil
			}

			err := tt.call(c)
			var uerr *Error
			if !errors.As(err, &uerr) || uerr.Kind != KindUnavailable || !uerr.Sent {
				t.Fatalf("error = %v, want KindUnavailable with Sent=true", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error = %v, want it to wrap context.DeadlineExceeded", err)
			}
			if hits.Load() != 1 {
				t.Errorf("hits = %d, want 1", hits.Load())
			}
		})
	}
}

// TestRetryAfter5xxPerOperation: the upstream may have acted before
// failing. Both operations retry to their bound: a repeated AssignKey can
// only meet its own 409, a repeated SecureData at most leaves an extra copy
// (acceptable; a lost backup is not).
func TestRetryAfter5xxPerOperation(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(status)
			}))
			defer srv.Close()
			c := newTestClient(t, srv.URL)
			c.wait = func(context.Context, time.Duration) error { return nil }
			_, errA := c.AssignKey(context.Background(), validAssign())
			// NOTE: a second client, so the first call's failures do not
			// open the breaker against the second.
			c = newTestClient(t, srv.URL)
			c.wait = func(context.Context, time.Duration) error { return nil }
			_, errD := c.SecureData(context.Background(), SecureDataRequest{PublicKey: "3082", Ciphertext: []byte{1}, Checksum: "ab"})
			if !errors.Is(errA, ErrUnavailable) || !errors.Is(errD, ErrUnavailable) || hits.Load() != int32(2*(1+maxRetries)) {
				t.Fatalf("errors %v / %v, hits %d; want unavailable, each sent %d times", errA, errD, hits.Load(), 1+maxRetries)
			}
			var uerr *Error
			if errors.As(errA, &uerr) && (!uerr.AfterAmbiguousAttempt || uerr.NothingDone()) {
				t.Errorf("AssignKey's last error %v: want AfterAmbiguousAttempt and not NothingDone", uerr)
			}
		})
	}
}

// TestRequestHeaders: every call carries the bearer token, Accept and a
// User-Agent, and the URL keeps a base path prefix.
func TestRequestHeaders(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]http.Header{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r.Header.Clone()
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		switch {
		case strings.HasSuffix(r.URL.Path, "/keys"):
			_, _ = io.WriteString(w, assignOK)
		default:
			_, _ = io.WriteString(w, `{"backup_id":"0f6f7b39-3c55-4b7f-a7a4-2b0c3c8b9f11"}`)
		}
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL+"/prefix/")
	ctx := context.Background()
	if _, err := c.AssignKey(ctx, validAssign()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SecureData(ctx, SecureDataRequest{PublicKey: "3082", Ciphertext: []byte{1}, Checksum: "ab"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SecureFile(ctx, SecureFileRequest{PublicKey: "3082", File: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/prefix/v1/partner/keys", "/prefix/v1/partner/secure/data", "/prefix/v1/partner/secure/file"} {
		h, ok := seen[path]
		if !ok {
			t.Errorf("no request to %s (saw %v)", path, seen)
			continue
		}
		if h.Get("Authorization") != "Bearer "+testToken || h.Get("Accept") != "application/json" || h.Get("User-Agent") != DefaultUserAgent {
			t.Errorf("%s headers: Authorization %q, Accept %q, User-Agent %q", path, h.Get("Authorization"), h.Get("Accept"), h.Get("User-Agent"))
		}
	}
}

// TestLocalValidation: a request missing what the contract requires is
// refused before anything is sent.
func TestLocalValidation(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	ctx := context.Background()
	assign := func(mutate func(*AssignKeyRequest)) func() error {
		return func() error {
			r := validAssign()
			mutate(&r)
			_, err := c.AssignKey(ctx, r)
			return err
		}
	}
	tests := []struct {
		name      string
		call      func() error
		wantField string
	}{
		{"no user", assign(func(r *AssignKeyRequest) { r.UserIdentifier = " " }), "user_identifier"},
		{"no customer id", assign(func(r *AssignKeyRequest) { r.CustomerID = "" }), "organisation.customer_id"},
		{"no customer name", assign(func(r *AssignKeyRequest) { r.CustomerName = "" }), "organisation.customer_name"},
		{"no package id", assign(func(r *AssignKeyRequest) { r.PackageID = "" }), "package.package_id"},
		{"no package name", assign(func(r *AssignKeyRequest) { r.PackageName = "" }), "package.package_name"},
		{"no environment", assign(func(r *AssignKeyRequest) { r.KeyEnvironment = "" }), "key_environment"},
		{"lowercase environment", assign(func(r *AssignKeyRequest) { r.KeyEnvironment = "hot" }), "key_environment"},
		{"sign public_key", assign(func(r *AssignKeyRequest) { r.SignWith = []string{"key_id", "public_key"} }), "sign_with"},
		{"data without key", func() error {
			_, err := c.SecureData(ctx, SecureDataRequest{Ciphertext: []byte{1}, Checksum: "ab"})
			return err
		}, "public_key"},
		{"data without ciphertext", func() error {
			_, err := c.SecureData(ctx, SecureDataRequest{PublicKey: "3082", Checksum: "ab"})
			return err
		}, "data"},
		{"data without checksum", func() error {
			_, err := c.SecureData(ctx, SecureDataRequest{PublicKey: "3082", Ciphertext: []byte{1}})
			return err
		}, "checksum"},
		{"file without key", func() error {
			_, err := c.SecureFile(ctx, SecureFileRequest{File: strings.NewReader("x")})
			return err
		}, "public_key"},
		{"file without file", func() error {
			_, err := c.SecureFile(ctx, SecureFileRequest{PublicKey: "3082"})
			return err
		}, "file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var uerr *Error
			if !errors.As(err, &uerr) || uerr.Kind != KindInvalid || uerr.Sent || uerr.Status != 0 {
				t.Fatalf("error = %v, want local KindInvalid (not sent)", err)
			}
			if _, ok := uerr.Fields[tt.wantField]; !ok {
				t.Fatalf("Fields = %v, want %q", uerr.Fields, tt.wantField)
			}
		})
	}
	if hits.Load() != 0 {
		t.Fatalf("server saw %d requests for invalid input, want 0", hits.Load())
	}
}

// TestTLSHandshakeFailureNotSent: a server whose certificate we do not
// trust never sees the request, so the failure is Sent=false (and, being
// safe, retried).
func TestTLSHandshakeFailureNotSent(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	defer srv.Close()
	transport := &http.Transport{} // the system roots: the test certificate is untrusted
	defer transport.CloseIdleConnections()
	c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.Transport = transport })
	attempts := 0
	c.wait = func(context.Context, time.Duration) error { attempts++; return nil }

	_, err := c.AssignKey(context.Background(), validAssign())
	var uerr *Error
	if !errors.As(err, &uerr) || uerr.Kind != KindUnavailable || uerr.Sent {
		t.Fatalf("error = %v, want KindUnavailable with Sent=false", err)
	}
	if hits.Load() != 0 || attempts != maxRetries {
		t.Fatalf("hits = %d, retries = %d; want 0 and %d", hits.Load(), attempts, maxRetries)
	}
}

// TestNeverSent pins which transport errors prove nothing was sent.
func TestNeverSent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"dns", &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, true},
		{"dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"dial timeout", &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}, true},
		{"read reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, false},
		{"write broken pipe", &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}, false},
		{"eof", io.EOF, false},
		{"unexpected eof", io.ErrUnexpectedEOF, false},
		{"deadline", context.DeadlineExceeded, false},
		{"cancelled", context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wrapped := fmt.Errorf("Post %q: %w", "https://x/v1/partner/keys", tt.err)
			if got := neverSent(wrapped); got != tt.want {
				t.Fatalf("neverSent(%v) = %t, want %t", tt.err, got, tt.want)
			}
			if e := transportError("POST /v1/partner/keys", wrapped, true); !e.Sent {
				t.Fatal("a request that got a connection must count as sent")
			}
		})
	}
}
