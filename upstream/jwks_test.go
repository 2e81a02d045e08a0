package upstream

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// jwksOf publishes the given pool keys, all with the assignment purpose.
func jwksOf(t *testing.T, indexes ...int) []byte {
	t.Helper()
	var keys []keycrypto.JWK
	for _, i := range indexes {
		keys = append(keys, keycrypto.JWK{KID: fmt.Sprintf("key-%d", i), Key: &testkeys.EC(i).PublicKey,
			Purposes: []string{keycrypto.PurposeAssignmentSig}})
	}
	doc, err := keycrypto.MarshalJWKS(keys)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// holds reports whether keys are exactly the pool keys at indexes, in order.
func holds(keys []keycrypto.VerificationKey, indexes ...int) bool {
	if len(keys) != len(indexes) {
		return false
	}
	for n, i := range indexes {
		if !keys[n].Key.Equal(&testkeys.EC(i).PublicKey) {
			return false
		}
	}
	return true
}

// jwksServer is a TLS JWKS endpoint whose document, Cache-Control and
// status a test can change, counting fetches.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int32

	mu           sync.Mutex
	doc          []byte
	cacheControl string
	status       int
	gate         chan struct{} // when set, a fetch waits for it to close
}

func newJWKSServer(t *testing.T, doc []byte, cacheControl string) *jwksServer {
	s := &jwksServer{doc: doc, cacheControl: cacheControl, status: http.StatusOK}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		doc, cc, status, gate := s.doc, s.cacheControl, s.status, s.gate
		s.mu.Unlock()
		if gate != nil {
			<-gate
		}
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(doc []byte, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doc, s.status = doc, status
}

// fetcher builds a JWKS fetcher for s trusting its TLS certificate, on
// the given clock.
func (s *jwksServer) fetcher(t *testing.T, clock *fakeClock) *jwksFetcher {
	t.Helper()
	ks, err := NewJWKSFetcher(JWKSConfig{URL: s.URL + "/.well-known/jwks.json", Transport: s.Client().Transport, Now: clock.Now})
	if err != nil {
		t.Fatalf("NewJWKSFetcher: %v", err)
	}
	return ks.(*jwksFetcher)
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)} }

// TestJWKSFromSandbox fetches the emulator's JWKS over TLS and verifies a
// real assignment's signature with it.
func TestJWKSFromSandbox(t *testing.T) {
	hs := sandboxtest.Start(t, sandboxtest.Options{TLS: true}).HTTP

	ks, err := NewJWKSFetcher(JWKSConfig{URL: hs.URL + sandbox.PathJWKS, Transport: hs.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ks.Keys(context.Background())
	if err != nil || len(keys) == 0 {
		t.Fatalf("Keys = %v, %v; want the emulator's keys", keys, err)
	}
	c, err := NewClient(Config{BaseURL: hs.URL, Token: sandbox.DevPartnerToken, Transport: hs.Client().Transport, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	key := assignTestKey(t, c, "jwks-user")
	if err := keycrypto.VerifySignature(keys, key.SignedAssignment()); err != nil {
		t.Fatalf("the fetched JWKS does not verify the emulator's signature: %v", err)
	}
	// A key the JWKS does not hold does not verify it.
	other := NewStaticKeySource(&keycrypto.KeySet{Keys: []keycrypto.VerificationKey{{Key: &testkeys.EC(5).PublicKey,
		Purposes: []string{keycrypto.PurposeAssignmentSig}}}})
	otherKeys, _ := other.Keys(context.Background())
	if err := keycrypto.VerifySignature(otherKeys, key.SignedAssignment()); !errors.Is(err, keycrypto.ErrSignatureInvalid) {
		t.Fatalf("VerifySignature with a foreign key = %v, want ErrSignatureInvalid", err)
	}
}

// TestJWKSCachesForMaxAge: one fetch serves until max-age has passed.
func TestJWKSCachesForMaxAge(t *testing.T) {
	tests := []struct {
		cacheControl string
		maxAge       time.Duration
	}{
		{"max-age=600, must-revalidate", 600 * time.Second},
		{"public, max-age=60", 60 * time.Second},
		{"", DefaultJWKSMaxAge},
		{"max-age=soon", DefaultJWKSMaxAge},
		{"max-age=31536000", maxJWKSMaxAge},
		{"no-store", 0},
		{"max-age=0", 0},
	}
	for _, tt := range tests {
		t.Run(tt.cacheControl, func(t *testing.T) {
			srv := newJWKSServer(t, jwksOf(t, 0), tt.cacheControl)
			clock := newClock()
			f := srv.fetcher(t, clock)
			ctx := context.Background()
			if keys, err := f.Keys(ctx); err != nil || !holds(keys, 0) {
				t.Fatalf("Keys = %v, %v", keys, err)
			}
			if tt.maxAge > 0 {
				clock.Advance(tt.maxAge - time.Second)
				if _, err := f.Keys(ctx); err != nil {
					t.Fatalf("Keys within max-age: %v", err)
				}
				if got := srv.fetches.Load(); got != 1 {
					t.Fatalf("fetches within max-age = %d, want 1", got)
				}
			}
			clock.Advance(time.Second)
			if keys, err := f.Keys(ctx); err != nil || !holds(keys, 0) {
				t.Fatalf("Keys after max-age = %v, %v", keys, err)
			}
			if got := srv.fetches.Load(); got != 2 {
				t.Fatalf("fetches after max-age = %d, want 2", got)
			}
		})
	}
}

// TestJWKSRefresh: a rotation is picked up by Refresh (the one re-fetch
// when no cached key verifies), a failed refresh keeps the cached set for
// its max-age, and after that the source fails closed.
func TestJWKSRefresh(t *testing.T) {
	srv := newJWKSServer(t, jwksOf(t, 0), "max-age=600")
	clock := newClock()
	f := srv.fetcher(t, clock)
	ctx := context.Background()
	if keys, err := f.Keys(ctx); err != nil || !holds(keys, 0) {
		t.Fatalf("Keys = %v, %v", keys, err)
	}

	srv.set(jwksOf(t, 1, 2), http.StatusOK) // rotation upstream
	if keys, _ := f.Keys(ctx); !holds(keys, 0) {
		t.Fatal("Keys must serve the cached set while it is fresh")
	}
	if keys, err := f.Refresh(ctx); err != nil || !holds(keys, 0) || srv.fetches.Load() != 1 {
		t.Fatalf("Refresh right after a fetch = %v, %v (fetches %d); want the cached set, no fetch", keys, err, srv.fetches.Load())
	}
	clock.Advance(minJWKSRefreshInterval)
	if keys, err := f.Refresh(ctx); err != nil || !holds(keys, 1, 2) {
		t.Fatalf("Refresh = %v, %v; want the rotated keys", keys, err)
	}
	if keys, _ := f.Keys(ctx); !holds(keys, 1, 2) || srv.fetches.Load() != 2 {
		t.Fatalf("Keys after Refresh = %v (fetches %d); want the rotated keys from cache", keys, srv.fetches.Load())
	}

	srv.set([]byte(`{"error":"internal"}`), http.StatusInternalServerError)
	clock.Advance(minJWKSRefreshInterval)
	if _, err := f.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("Refresh against a failing server = %v, want an error naming the status", err)
	}
	if keys, err := f.Keys(ctx); err != nil || !holds(keys, 1, 2) {
		t.Fatalf("Keys after a failed refresh = %v, %v; want the cached set until its max-age", keys, err)
	}
	clock.Advance(600 * time.Second)
	if keys, err := f.Keys(ctx); err == nil {
		t.Fatalf("Keys after max-age with the server failing = %v; want an error (fail closed)", keys)
	}
	srv.set(jwksOf(t, 3), http.StatusOK)
	if keys, err := f.Keys(ctx); err != nil || !holds(keys, 3) {
		t.Fatalf("Keys after recovery = %v, %v", keys, err)
	}
}

// TestJWKSCoalescesFetches: callers arriving while a fetch is in flight
// wait for it instead of fetching again.
func TestJWKSCoalescesFetches(t *testing.T) {
	const callers = 8
	srv := newJWKSServer(t, jwksOf(t, 0), "max-age=600")
	gate := make(chan struct{})
	srv.gate = gate
	f := srv.fetcher(t, newClock())
	var joined atomic.Int32
	f.joined = func() {
		if joined.Add(1) == callers-1 {
			close(gate) // everyone is waiting on the one fetch: let it finish
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				_, err = f.Keys(context.Background())
			} else {
				_, err = f.Refresh(context.Background())
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.fetches.Load(); got != 1 {
		t.Fatalf("fetches = %d, want 1 for %d concurrent callers", got, callers)
	}
}

// TestJWKSRefusesRedirect: the contract fetches without following
// redirects; a 3xx is an error naming its status and the target is never
// contacted.
func TestJWKSRefusesRedirect(t *testing.T) {
	target := newJWKSServer(t, jwksOf(t, 0), "")
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			redirect := httptest.NewTLSServer(http.RedirectHandler(target.URL+"/.well-known/jwks.json", status))
			defer redirect.Close()
			ks, err := NewJWKSFetcher(JWKSConfig{URL: redirect.URL + "/.well-known/jwks.json", Transport: redirect.Client().Transport})
			if err != nil {
				t.Fatal(err)
			}
			keys, err := ks.Keys(context.Background())
			if err == nil || !strings.Contains(err.Error(), fmt.Sprint(status)) || !strings.Contains(err.Error(), "redirect") {
				t.Fatalf("Keys = %v, %v; want an error naming the %d redirect", keys, err, status)
			}
			if target.fetches.Load() != 0 {
				t.Fatal("the redirect was followed")
			}
		})
	}
}

// TestJWKSRejectsBadDocuments: a body over the limit, a broken document
// and a non-200 are errors, never an empty trusted set.
func TestJWKSRejectsBadDocuments(t *testing.T) {
	tests := []struct {
		name   string
		doc    []byte
		status int
		want   string
	}{
		{"oversized", []byte(`{"keys":[],"pad":"` + strings.Repeat("p", maxJWKSBody) + `"}`), 200, "exceeds"},
		{"not json", []byte(`<html>`), 200, keycrypto.ErrInvalidJWKS.Error()},
		{"not found", []byte(`{}`), 404, "404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newJWKSServer(t, tt.doc, "")
			srv.set(tt.doc, tt.status)
			keys, err := srv.fetcher(t, newClock()).Keys(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Keys = %v, %v; want an error containing %q", keys, err, tt.want)
			}
		})
	}
}

// TestJWKSEligibleAtNow: keys not yet valid at the injected clock, or for
// another purpose, are not returned.
func TestJWKSEligibleAtNow(t *testing.T) {
	clock := newClock()
	doc, err := keycrypto.MarshalJWKS([]keycrypto.JWK{
		{KID: "current", Key: &testkeys.EC(0).PublicKey, Purposes: []string{keycrypto.PurposeAssignmentSig}, ValidFrom: clock.Now().Add(-time.Hour)},
		{KID: "next", Key: &testkeys.EC(1).PublicKey, Purposes: []string{keycrypto.PurposeAssignmentSig}, ValidFrom: clock.Now().Add(time.Hour)},
		{KID: "other", Key: &testkeys.EC(2).PublicKey, Purposes: []string{"backup-sig"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := newJWKSServer(t, doc, "max-age=7200")
	f := srv.fetcher(t, clock)
	if keys, err := f.Keys(context.Background()); err != nil || !holds(keys, 0) {
		t.Fatalf("Keys = %v, %v; want only the current key", keys, err)
	}
	clock.Advance(time.Hour)
	if keys, err := f.Keys(context.Background()); err != nil || !holds(keys, 0, 1) {
		t.Fatalf("Keys an hour later = %v, %v; want current and next", keys, err)
	}
}

func TestJWKSConfig(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(jwksOf(t, 0)) }))
	defer plain.Close()
	tests := []struct {
		name    string
		cfg     JWKSConfig
		wantErr string
	}{
		{"production", JWKSConfig{URL: ProductionJWKSURL}, ""},
		{"missing", JWKSConfig{}, "JWKS URL is required"},
		{"http refused", JWKSConfig{URL: plain.URL}, "uses http://"},
		{"http allowed", JWKSConfig{URL: plain.URL, AllowHTTP: true}, ""},
		{"credentials", JWKSConfig{URL: "https://u:p@policies.keys.coincover.com/.well-known/jwks.json"}, "credentials"},
		{"relative", JWKSConfig{URL: "/.well-known/jwks.json"}, "not absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := NewJWKSFetcher(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewJWKSFetcher = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.cfg.AllowHTTP {
				if keys, err := ks.Keys(context.Background()); err != nil || !holds(keys, 0) {
					t.Fatalf("Keys over allowed http = %v, %v", keys, err)
				}
			}
		})
	}
}

func TestCacheMaxAge(t *testing.T) {
	tests := []struct {
		values []string
		want   time.Duration
	}{
		{nil, DefaultJWKSMaxAge},
		{[]string{"max-age=600, must-revalidate"}, 600 * time.Second},
		{[]string{"MAX-AGE=30"}, 30 * time.Second},
		{[]string{`max-age="45"`}, 45 * time.Second},
		{[]string{"public", "max-age=90"}, 90 * time.Second},
		{[]string{"max-age=-5"}, DefaultJWKSMaxAge},
		{[]string{"max-age=99999999999999999999"}, DefaultJWKSMaxAge},
		{[]string{"max-age=172800"}, maxJWKSMaxAge},
		{[]string{"max-age=600, no-cache"}, 0},
		{[]string{"no-store"}, 0},
	}
	for _, tt := range tests {
		if got := cacheMaxAge(tt.values); got != tt.want {
			t.Errorf("cacheMaxAge(%q) = %v, want %v", tt.values, got, tt.want)
		}
	}
}

// pemOf encodes pool P-256 public keys as PUBLIC KEY blocks.
func pemOf(t *testing.T, keys ...*ecdsa.PublicKey) []byte {
	t.Helper()
	var out []byte
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	return out
}

func TestLoadKeySourceFile(t *testing.T) {
	rsaDER, err := x509.MarshalPKIXPublicKey(&testkeys.RSA(0).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content []byte
		want    []int
		wantErr error
	}{
		{"jwks", jwksOf(t, 0, 1), []int{0, 1}, nil},
		{"jwks with leading whitespace", append([]byte("\n  "), jwksOf(t, 2)...), []int{2}, nil},
		{"pem", pemOf(t, &testkeys.EC(3).PublicKey, &testkeys.EC(4).PublicKey), []int{3, 4}, nil},
		{"empty", nil, nil, keycrypto.ErrInvalidJWKS},
		{"garbage", []byte("not a key"), nil, keycrypto.ErrInvalidJWKS},
		{"broken jwks", []byte(`{"keys":`), nil, keycrypto.ErrInvalidJWKS},
		{"rsa pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER}), nil, keycrypto.ErrInvalidJWKS},
		{"jwks without usable keys", []byte(`{"keys":[]}`), nil, keycrypto.ErrNoVerificationKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			ks, err := LoadKeySourceFile(path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || ks != nil {
					t.Fatalf("LoadKeySourceFile = %v, %v; want %v", ks, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, get := range []func(context.Context) ([]keycrypto.VerificationKey, error){ks.Keys, ks.Refresh} {
				if keys, err := get(context.Background()); err != nil || !holds(keys, tt.want...) {
					t.Fatalf("keys = %v, %v; want pool keys %v", keys, err, tt.want)
				}
			}
		})
	}
	if _, err := LoadKeySourceFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing file must be an error")
	}
}

func TestStaticKeySourceNil(t *testing.T) {
	if keys, err := NewStaticKeySource(nil).Keys(context.Background()); !errors.Is(err, keycrypto.ErrNoVerificationKey) {
		t.Fatalf("Keys = %v, %v; want ErrNoVerificationKey", keys, err)
	}
}
