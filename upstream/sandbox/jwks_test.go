package sandbox_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestJWKSDefault checks the default single key: the contract's format,
// kid enclave-signing-key-v1, the caching header, and that it verifies
// what the emulator signs.
func TestJWKSDefault(t *testing.T) {
	h := start(t, sandbox.Config{})
	resp := h.do(http.MethodGet, sandbox.PathJWKS, "", "", nil)
	if resp.status != http.StatusOK {
		t.Fatalf("status %d", resp.status)
	}
	if got := resp.header.Get("Cache-Control"); got != "max-age=600, must-revalidate" {
		t.Errorf("Cache-Control %q", got)
	}
	if got := resp.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(resp.body, &doc); err != nil || len(doc.Keys) != 1 {
		t.Fatalf("JWKS %s (%v)", resp.body, err)
	}
	k := doc.Keys[0]
	for field, want := range map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "enclave-signing-key-v1"} {
		if k[field] != want {
			t.Errorf("%s = %v, want %s", field, k[field], want)
		}
	}
	for _, field := range []string{"x", "y", "coincover:purposes", "coincover:validFrom"} {
		if k[field] == nil {
			t.Errorf("entry lacks %s: %s", field, resp.body)
		}
	}
	set, err := keycrypto.ParseJWKS(resp.body)
	if err != nil {
		t.Fatalf("ParseJWKS: %v", err)
	}
	eligible := set.Eligible(time.Now())
	if len(eligible) != 1 {
		t.Fatalf("%d eligible keys now, want 1", len(eligible))
	}
	a := h.assign(assignRequest("alice", "org-1", "key_id"))
	if err := keycrypto.VerifySignature(eligible, a.signed()); err != nil {
		t.Fatalf("the published key does not verify an assignment: %v", err)
	}
}

// TestJWKSRotation configures what other packages' tests need: two live
// keys, one retired (gone from the JWKS), one not yet valid, and one that
// lacks the assignment purpose; the active one signs.
func TestJWKSRotation(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	h := start(t, sandbox.Config{
		Now: func() time.Time { return now },
		SigningKeys: []sandbox.SigningKey{
			{KID: "old", Private: testkeys.EC(0), ValidFrom: now.Add(-90 * 24 * time.Hour)},
			{KID: "current", Private: testkeys.EC(1), ValidFrom: now.Add(-24 * time.Hour), Active: true},
			{KID: "retired", Private: testkeys.EC(2), ValidFrom: now.Add(-365 * 24 * time.Hour), Retired: true},
			{KID: "next", Private: testkeys.EC(3), ValidFrom: now.Add(7 * 24 * time.Hour)},
			{KID: "policy-only", Private: testkeys.EC(4), ValidFrom: now.Add(-time.Hour), Purposes: []string{"policy-sig"}},
		},
	})
	resp := h.do(http.MethodGet, sandbox.PathJWKS, "", "", nil)
	set, err := keycrypto.ParseJWKS(resp.body)
	if err != nil {
		t.Fatalf("ParseJWKS: %v\n%s", err, resp.body)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	if want := []string{"old", "current", "next", "policy-only"}; !slices.Equal(kids, want) {
		t.Fatalf("published kids %v, want %v", kids, want)
	}
	var eligible []string
	for _, k := range set.Eligible(now) {
		eligible = append(eligible, k.KID)
	}
	if want := []string{"old", "current"}; !slices.Equal(eligible, want) {
		t.Fatalf("eligible kids %v, want %v", eligible, want)
	}
	if got := h.srv.VerificationKeys(); len(got.Keys) != 4 {
		t.Fatalf("VerificationKeys has %d keys, want the 4 published", len(got.Keys))
	}

	a := h.assign(assignRequest("alice", "org-1"))
	only := func(kid string) []keycrypto.VerificationKey {
		for _, k := range set.Keys {
			if k.KID == kid {
				return []keycrypto.VerificationKey{k}
			}
		}
		t.Fatalf("no key %s", kid)
		return nil
	}
	if err := keycrypto.VerifySignature(only("current"), a.signed()); err != nil {
		t.Fatalf("the active key did not sign: %v", err)
	}
	if err := keycrypto.VerifySignature(only("old"), a.signed()); !errors.Is(err, keycrypto.ErrSignatureInvalid) {
		t.Fatalf("a non-active key verified: %v", err)
	}
}

// TestSigningKeysInvalid rejects configurations that cannot sign or are
// ambiguous.
func TestSigningKeysInvalid(t *testing.T) {
	cases := map[string][]sandbox.SigningKey{
		"all retired":     {{KID: "a", Private: testkeys.EC(0), Retired: true}},
		"two active":      {{KID: "a", Private: testkeys.EC(0), Active: true}, {KID: "b", Private: testkeys.EC(1), Active: true}},
		"retired active":  {{KID: "a", Private: testkeys.EC(0), Active: true, Retired: true}},
		"duplicate kid":   {{KID: "a", Private: testkeys.EC(0)}, {KID: "a", Private: testkeys.EC(1)}},
		"missing kid":     {{Private: testkeys.EC(0)}},
		"missing private": {{KID: "a"}},
	}
	for name, keys := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := sandbox.New(sandbox.Config{SigningKeys: keys, KeySource: testkeys.NewRSASource()}); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}
