package service_test

import (
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// jwksPath is where the sandbox publishes its signing keys.
const jwksPath = "/.well-known/jwks.json"

// heldKey is the key the upstream assigned to user at org, if any.
func (f *fixture) heldKey(t *testing.T, user, org string) (sandbox.InspectedKey, bool) {
	t.Helper()
	for _, k := range f.inspect.Keys(t) {
		if k.UserIdentifier == user && k.CustomerID == org {
			return k, true
		}
	}
	return sandbox.InspectedKey{}, false
}

// wantUntrusted assigns a key for user at org and checks the whole of the
// key-trust contract for an assignment the upstream signed badly: the caller
// gets FailedPrecondition/ENCLAVE_SIGNATURE_INVALID, an error log line names
// the key and the failed check, recovery.signature.verifications{result=
// check} grows by one, and nothing usable is recorded — the pair is parked
// as untrusted, and the key can be neither fetched, listed nor encrypted to.
// A repeat is answered from the record without another upstream call or
// verification.
func wantUntrusted(t *testing.T, f *fixture, user, org, check string) {
	t.Helper()
	before := f.metrics(t)

	for range 2 {
		_, err := f.client.AssignKey(t.Context(), assignRequest(user, org))
		wantStatus(t, err, codes.FailedPrecondition, service.ReasonEnclaveSignatureInvalid)
	}

	after := f.metrics(t)
	if d := after.verifications(check) - before.verifications(check); d != 1 {
		t.Errorf("signature.verifications{result=%s} grew by %v, want 1 (the repeat must not verify again)", check, d)
	}
	if d := after.verifications("valid") - before.verifications("valid"); d != 0 {
		t.Errorf("signature.verifications{result=valid} grew by %v for a bad assignment", d)
	}
	if d := after.assignments("untrusted") - before.assignments("untrusted"); d != 2 {
		t.Errorf("assignments{outcome=untrusted} grew by %v, want 2", d)
	}

	held, ok := f.heldKey(t, user, org)
	if !ok {
		t.Fatalf("the upstream holds no key for %s at %s", user, org)
	}
	if n := countHeld(t, f, user, org); n != 1 {
		t.Errorf("the upstream holds %d keys for the pair, want 1 (the repeat must not call upstream)", n)
	}
	if line := logLine(f.logs, "enclave signature verification failed", held.KeyID); line == nil {
		t.Errorf("no log line names key %s as failing verification", held.KeyID)
	} else {
		if line["level"] != "ERROR" {
			t.Errorf("verification failure logged at %v, want ERROR", line["level"])
		}
		if line["check"] != check {
			t.Errorf("log line names check %v, want %s", line["check"], check)
		}
	}

	// Nothing usable was recorded.
	if state := f.pairState(t, assignRequest(user, org)); state != registry.AssignmentUntrusted {
		t.Errorf("registry state of the pair = %s, want AssignmentUntrusted", state)
	}
	_, err := f.client.GetKey(t.Context(), &recoveryv1.GetKeyRequest{KeyId: held.KeyID})
	wantStatus(t, err, codes.NotFound, service.ReasonKeyNotFound)
	listed, err := f.client.ListKeys(t.Context(), &recoveryv1.ListKeysRequest{CustomerId: org, UserIdentifier: user})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(listed.GetKeys()); n != 0 {
		t.Errorf("ListKeys shows %d keys for the pair, want none", n)
	}
	backupsBefore := len(f.inspect.Backups(t))
	for _, key := range []*recoveryv1.RecoveryKey{{KeyId: held.KeyID}, {PublicKeyHex: held.PublicKey}} {
		_, err := f.client.SecureData(t.Context(), secureDataTo(key, key.GetKeyId() == "", ""))
		wantStatus(t, err, codes.NotFound, service.ReasonKeyNotFound)
	}
	if n := len(f.inspect.Backups(t)) - backupsBefore; n != 0 {
		t.Errorf("the upstream stored %d backups to an untrusted key", n)
	}
}

// countHeld is how many keys the upstream holds for the pair.
func countHeld(t *testing.T, f *fixture, user, org string) int {
	t.Helper()
	n := 0
	for _, k := range f.inspect.Keys(t) {
		if k.UserIdentifier == user && k.CustomerID == org {
			n++
		}
	}
	return n
}

// logLine is the last JSON log line whose msg starts with msg and whose
// key_id is keyID, or nil.
func logLine(logs *sandboxtest.LogBuffer, msg, keyID string) map[string]any {
	var found map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(l), &line) != nil {
			continue
		}
		if m, _ := line["msg"].(string); strings.HasPrefix(m, msg) && line["key_id"] == keyID {
			found = line
		}
	}
	return found
}

// wantTrusted assigns a key for user at org and checks it verified: the key
// is returned and the upstream's, and recovery.signature.verifications{
// result=valid} grew by one.
func wantTrusted(t *testing.T, f *fixture, user, org string) *recoveryv1.RecoveryKey {
	t.Helper()
	before := f.metrics(t)
	resp, err := f.client.AssignKey(t.Context(), assignRequest(user, org))
	if err != nil {
		t.Fatalf("AssignKey(%s): %v", user, err)
	}
	if held, ok := f.heldKey(t, user, org); !ok || held.KeyID != resp.GetKey().GetKeyId() {
		t.Errorf("AssignKey returned key %s, the upstream holds %+v", resp.GetKey().GetKeyId(), held)
	}
	if d := f.metrics(t).verifications("valid") - before.verifications("valid"); d != 1 {
		t.Errorf("signature.verifications{result=valid} grew by %v, want 1", d)
	}
	return resp.GetKey()
}

func TestUntrustedAssignmentIsRefusedLoggedCountedAndUnusable(t *testing.T) {
	tests := []struct {
		misbehave string
		check     string
	}{
		{sandbox.MisbehaveBadSignature, "invalid_signature"},
		{sandbox.MisbehaveWrongBinding, "binding_mismatch"},
		{sandbox.MisbehaveSwappedKey, "binding_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.misbehave, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{misbehave: tt.misbehave})
			wantUntrusted(t, f, "user-1", "org-1", tt.check)
			if n := len(f.registryBackups()); n != 0 {
				t.Errorf("the registry recorded %d backups", n)
			}
		})
	}
}

// testClock is a settable clock for the JWKS fetcher.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// signingKey is enclave signing key i of the test pool, published with
// validFrom; active marks the one that signs.
func signingKey(i int, kid string, validFrom time.Time, active bool, purposes ...string) sandbox.SigningKey {
	return sandbox.SigningKey{KID: kid, Private: testkeys.EC(i), ValidFrom: validFrom, Active: active, Purposes: purposes}
}

// newEmulator starts a sandbox emulator with keys, keeping its state in
// dataDir ("": in memory); rsaKeys hands out the assigned keys, shared
// across the emulators of one test so that no two assignments get the same
// key.
func newEmulator(t *testing.T, dataDir string, rsaKeys func() (*rsa.PrivateKey, error), keys ...sandbox.SigningKey) *sandbox.Server {
	t.Helper()
	sbx, err := sandbox.New(sandbox.Config{DataDir: dataDir, KeySource: rsaKeys, SigningKeys: keys, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	t.Cleanup(func() { _ = sbx.Close() })
	return sbx
}

// switchboard is one upstream URL whose emulators the test swaps while the
// service runs, standing in for a Partner Key Service that rotates its
// signing keys: the partner endpoints and the JWKS may come from different
// emulators, as when the enclave signs with a key its publisher has already
// retired (or not yet published). It counts JWKS fetches.
type switchboard struct {
	server      *httptest.Server
	partner     atomic.Pointer[sandbox.Server]
	jwks        atomic.Pointer[sandbox.Server]
	jwksFetches atomic.Int64
}

func newSwitchboard(t *testing.T, partner, jwks *sandbox.Server) *switchboard {
	t.Helper()
	b := &switchboard{}
	b.route(partner, jwks)
	b.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == jwksPath {
			b.jwksFetches.Add(1)
			b.jwks.Load().ServeHTTP(w, r)
			return
		}
		b.partner.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(b.server.Close)
	return b
}

// route sends the partner endpoints (and inspection) to partner and the
// JWKS to jwks.
func (b *switchboard) route(partner, jwks *sandbox.Server) {
	b.partner.Store(partner)
	b.jwks.Store(jwks)
}

func TestKeyRotationTrust(t *testing.T) {
	start := time.Now().UTC().Truncate(time.Second)
	live := start.Add(-time.Hour)
	future := start.Add(time.Hour)
	const (
		kidA = "enclave-signing-key-a"
		kidB = "enclave-signing-key-b"
	)
	// Each case: the keys of the emulator that signs, and of the one that
	// publishes the JWKS (nil: the same emulator).
	tests := []struct {
		name    string
		signer  []sandbox.SigningKey
		jwks    []sandbox.SigningKey
		trusted bool
	}{
		{"first of two live keys signs", []sandbox.SigningKey{
			signingKey(0, kidA, live, true), signingKey(1, kidB, live, false)}, nil, true},
		{"second of two live keys signs", []sandbox.SigningKey{
			signingKey(0, kidA, live, false), signingKey(1, kidB, live, true)}, nil, true},
		{"retired key signs: absent from the JWKS", []sandbox.SigningKey{
			signingKey(2, "enclave-signing-key-retired", live, true), signingKey(0, kidA, live, false)},
			[]sandbox.SigningKey{
				{KID: "enclave-signing-key-retired", Private: testkeys.EC(2), ValidFrom: live, Retired: true},
				signingKey(0, kidA, live, true)}, false},
		{"retired key signs: published without the assignment-sig purpose", []sandbox.SigningKey{
			signingKey(2, "enclave-signing-key-retired", live, true, "policy-sig"), signingKey(0, kidA, live, false)}, nil, false},
		{"not-yet-valid key signs", []sandbox.SigningKey{
			signingKey(3, "enclave-signing-key-next", future, true), signingKey(0, kidA, live, false)}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := testkeys.NewRSASource()
			signer := newEmulator(t, "", keys, tt.signer...)
			publisher := signer
			if tt.jwks != nil {
				publisher = newEmulator(t, "", keys, tt.jwks...)
			}
			b := newSwitchboard(t, signer, publisher)
			clock := &testClock{now: start}
			f := newFixture(t, fixtureOptions{upstreamURL: b.server.URL, jwksNow: clock.Now})
			if tt.trusted {
				wantTrusted(t, f, "user-1", "org-1")
				return
			}
			wantUntrusted(t, f, "user-1", "org-1", "invalid_signature")
		})
	}
}

func TestNotYetValidKeyIsTrustedOnceTheClockPassesIt(t *testing.T) {
	start := time.Now().UTC().Truncate(time.Second)
	validFrom := start.Add(time.Hour)

	t.Run("alongside a live key", func(t *testing.T) {
		clock := &testClock{now: start}
		f := newFixture(t, fixtureOptions{jwksNow: clock.Now, signingKeys: []sandbox.SigningKey{
			signingKey(3, "enclave-signing-key-next", validFrom, true),
			signingKey(0, "enclave-signing-key-a", start.Add(-time.Hour), false),
		}})
		wantUntrusted(t, f, "user-early", "org-1", "invalid_signature")
		clock.advance(validFrom.Sub(start) - time.Second)
		wantUntrusted(t, f, "user-just-before", "org-1", "invalid_signature")
		clock.advance(time.Second) // validFrom itself: valid
		wantTrusted(t, f, "user-on-time", "org-1")
	})

	t.Run("as the only key", func(t *testing.T) {
		// With no key valid yet nothing could be verified, so nothing is
		// assigned: the caller is told to retry, and the pair stays free.
		clock := &testClock{now: start}
		f := newFixture(t, fixtureOptions{jwksNow: clock.Now, signingKeys: []sandbox.SigningKey{
			signingKey(3, "enclave-signing-key-next", validFrom, true),
		}})
		_, err := f.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
		wantStatus(t, err, codes.Unavailable, service.ReasonVerificationKeysUnavailable)
		if n := len(f.inspect.Keys(t)); n != 0 {
			t.Fatalf("the upstream assigned %d keys that could not be verified", n)
		}
		clock.advance(validFrom.Sub(start))
		key := wantTrusted(t, f, "user-1", "org-1")
		if key.GetAssignedBy() != "" {
			t.Errorf("assigned_by = %q without authentication", key.GetAssignedBy())
		}
	})
}

func TestKeyRotationRefreshesTheJWKSOnce(t *testing.T) {
	start := time.Now().UTC().Truncate(time.Second)
	live := start.Add(-time.Hour)
	keys := testkeys.NewRSASource()
	state := t.TempDir()
	oldKey := signingKey(0, "enclave-signing-key-v1", live, true)
	before := newEmulator(t, state, keys, oldKey)

	b := newSwitchboard(t, before, before)
	clock := &testClock{now: start}
	f := newFixture(t, fixtureOptions{upstreamURL: b.server.URL, jwksNow: clock.Now})

	first := wantTrusted(t, f, "user-1", "org-1")
	if n := b.jwksFetches.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches for the first assignment, want 1", n)
	}
	// Well within the cache's max-age, but past the fetcher's minimum
	// interval between refreshes.
	clock.advance(time.Minute)

	// The rotation: the upstream restarts on its state with a new active
	// key, v1 still published. Until the new JWKS is out, the old emulator
	// answers for it.
	if err := before.Close(); err != nil {
		t.Fatal(err)
	}
	oldKey.Active = false
	after := newEmulator(t, state, keys, oldKey, signingKey(4, "enclave-signing-key-v2", live, true))

	t.Run("the new key is not published yet: one refetch, then reject", func(t *testing.T) {
		b.route(after, before)
		wantUntrusted(t, f, "user-unpublished", "org-1", "invalid_signature")
		if n := b.jwksFetches.Load(); n != 2 {
			t.Fatalf("%d JWKS fetches, want 2: the cached set plus exactly one refresh", n)
		}
		clock.advance(time.Minute)
	})
	t.Run("the new key is published: one refetch, then verify", func(t *testing.T) {
		b.route(after, after)
		fetches := b.jwksFetches.Load()
		wantTrusted(t, f, "user-2", "org-1")
		if n := b.jwksFetches.Load() - fetches; n != 1 {
			t.Fatalf("%d JWKS fetches for the first assignment after rotation, want exactly 1", n)
		}
		// The refreshed set is cached: the next assignment fetches nothing.
		wantTrusted(t, f, "user-3", "org-1")
		if n := b.jwksFetches.Load() - fetches; n != 1 {
			t.Errorf("%d JWKS fetches after the refresh was cached, want still 1", n)
		}
	})
	// The key verified before the rotation stays recorded and usable.
	got, err := f.client.GetKey(t.Context(), &recoveryv1.GetKeyRequest{KeyId: first.GetKeyId()})
	if err != nil || got.GetKey().GetKeyId() != first.GetKeyId() {
		t.Fatalf("GetKey of the pre-rotation key: %v", err)
	}
	if _, err := f.client.SecureData(t.Context(), secureDataTo(first, false, "")); err != nil {
		t.Errorf("SecureData to the pre-rotation key: %v", err)
	}
}
