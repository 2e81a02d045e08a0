package sandbox_test

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestAssignKeyValidation: every bad field is a 400 naming each bad field,
// and a rejected request assigns nothing.
func TestAssignKeyValidation(t *testing.T) {
	h := start(t, sandbox.Config{})
	with := func(mutate func(m map[string]any)) map[string]any {
		m := assignRequest("alice", "org-1")
		mutate(m)
		return m
	}
	cases := []struct {
		name   string
		body   any
		fields []string // the exact keys of "fields"; nil = no fields
		status int
	}{
		{"empty object", `{}`, []string{"user_identifier", "key_type", "key_environment", "organisation", "package"}, 400},
		{"not JSON", `{"user_identifier":`, nil, 400},
		{"array body", `[1,2]`, nil, 400},
		{"trailing data", `{} {}`, nil, 400},
		{"missing user_identifier", with(func(m map[string]any) { delete(m, "user_identifier") }), []string{"user_identifier"}, 400},
		{"blank user_identifier", with(func(m map[string]any) { m["user_identifier"] = "  " }), []string{"user_identifier"}, 400},
		{"numeric user_identifier", with(func(m map[string]any) { m["user_identifier"] = 42 }), []string{"user_identifier"}, 400},
		{"overlong user_identifier", with(func(m map[string]any) { m["user_identifier"] = strings.Repeat("u", 1025) }), []string{"user_identifier"}, 400},
		{"key_type missing", with(func(m map[string]any) { delete(m, "key_type") }), []string{"key_type"}, 400},
		{"key_type secp256k1", with(func(m map[string]any) { m["key_type"] = "secp256k1" }), []string{"key_type"}, 400},
		{"key_type ed25519", with(func(m map[string]any) { m["key_type"] = "ed25519" }), []string{"key_type"}, 400},
		{"key_type unknown", with(func(m map[string]any) { m["key_type"] = "RSA4096" }), []string{"key_type"}, 400},
		{"key_environment missing (no default)", with(func(m map[string]any) { delete(m, "key_environment") }), []string{"key_environment"}, 400},
		{"key_environment lowercase", with(func(m map[string]any) { m["key_environment"] = "hot" }), []string{"key_environment"}, 400},
		{"organisation missing", with(func(m map[string]any) { delete(m, "organisation") }), []string{"organisation"}, 400},
		{"organisation a string", with(func(m map[string]any) { m["organisation"] = "org-1" }), []string{"organisation"}, 400},
		{"organisation empty", with(func(m map[string]any) { m["organisation"] = map[string]any{} }), []string{"organisation.customer_id", "organisation.customer_name"}, 400},
		{"package fields missing", with(func(m map[string]any) { m["package"] = map[string]any{"package_id": "p"} }), []string{"package.package_name"}, 400},
		{"sign_with public_key", with(func(m map[string]any) { m["sign_with"] = []string{"key_id", "public_key"} }), []string{"sign_with"}, 400},
		{"sign_with unknown", with(func(m map[string]any) { m["sign_with"] = []string{"customer_name"} }), []string{"sign_with"}, 400},
		{"sign_with duplicate", with(func(m map[string]any) { m["sign_with"] = []string{"key_id", "key_id"} }), []string{"sign_with"}, 400},
		{"sign_with not an array", with(func(m map[string]any) { m["sign_with"] = "key_id" }), []string{"sign_with"}, 400},
		{"sign_with numbers", with(func(m map[string]any) { m["sign_with"] = []int{1} }), []string{"sign_with"}, 400},
		{"several bad fields at once", with(func(m map[string]any) {
			m["key_environment"] = "WARM"
			m["key_type"] = "rsa2048"
			delete(m, "user_identifier")
		}), []string{"user_identifier", "key_type", "key_environment"}, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, tc.body)
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tc.status, resp.body)
			}
			e := resp.errorBody(t)
			if e.Error != "invalid_request" {
				t.Errorf("error type %q", e.Error)
			}
			got := slices.Sorted(maps.Keys(e.Fields))
			want := slices.Sorted(slices.Values(tc.fields))
			if !slices.Equal(got, want) {
				t.Errorf("fields %v, want %v (%s)", got, want, resp.body)
			}
			for f, problem := range e.Fields {
				if problem == "" {
					t.Errorf("field %s has no explanation", f)
				}
			}
		})
	}
	// The body is read as JSON whatever its Content-Type (curl -d sends a
	// form type), so the answer is about the fields.
	if resp := h.do(http.MethodPost, sandbox.PathAssignKey, sandbox.DevPartnerToken, "application/x-www-form-urlencoded", strings.NewReader("{}")); resp.status != http.StatusBadRequest || len(resp.errorBody(t).Fields) != 5 {
		t.Errorf("form-typed JSON body: status %d: %s", resp.status, resp.body)
	}
	if n := len(h.inspect.Keys(t)); n != 0 {
		t.Fatalf("%d keys assigned by rejected requests", n)
	}
}

// TestAssignKeyConflict covers the 409 row: the same user_identifier and
// organisation twice, also under concurrency; other pairs are independent.
func TestAssignKeyConflict(t *testing.T) {
	h := start(t, sandbox.Config{})
	first := h.assign(assignRequest("alice", "org-1"))

	again := assignRequest("alice", "org-1")
	again["key_environment"] = "HOT" // different terms are still the same pair
	resp := h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, again)
	if resp.status != http.StatusConflict {
		t.Fatalf("duplicate: status %d, want 409: %s", resp.status, resp.body)
	}
	e := resp.errorBody(t)
	if e.Message != "Key already assigned for this user and organisation" || e.Error != "conflict" {
		t.Errorf("409 body %+v", e)
	}
	if strings.Contains(string(resp.body), first.KeyID) || strings.Contains(string(resp.body), first.PublicKey[:64]) {
		t.Error("409 leaks the existing key")
	}
	// Same user in another organisation, another user in the same one: fine.
	h.assign(assignRequest("alice", "org-2"))
	h.assign(assignRequest("bob", "org-1"))

	// Eight concurrent requests for one new pair: exactly one wins.
	var wg sync.WaitGroup
	statuses := make(chan int, 8)
	for range 8 {
		wg.Go(func() {
			statuses <- h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, assignRequest("carol", "org-1")).status
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[http.StatusOK] != 1 || count[http.StatusConflict] != 7 {
		t.Fatalf("concurrent duplicates: %v, want one 200 and seven 409", count)
	}
	keys := h.inspect.Keys(t)
	if len(keys) != 4 {
		t.Fatalf("%d keys, want 4", len(keys))
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.PublicKey] {
			t.Fatal("two assignments share a public key")
		}
		seen[k.PublicKey] = true
	}
}

// TestAssignKeySignature checks what the signature covers with and without
// sign_with, and that signed_fields echoes the request order.
func TestAssignKeySignature(t *testing.T) {
	h := start(t, sandbox.Config{})
	keys := h.srv.VerificationKeys().Keys

	plain := h.assign(assignRequest("u1", "org-1"))
	if plain.SignedPayload != "" || plain.SignedFields != nil {
		t.Fatalf("signed_payload/signed_fields sent without sign_with: %+v", plain)
	}
	if err := keycrypto.VerifySignature(keys, plain.signed()); err != nil {
		t.Fatalf("signature over the public_key hex does not verify: %v", err)
	}

	empty := h.assign(assignRequest("u2", "org-1", []string{}...))
	if empty.SignedPayload != "" {
		t.Fatalf("an empty sign_with is the same as none, got payload %q", empty.SignedPayload)
	}

	order := []string{"user_id", "external_package_id", "key_id", "external_customer_id"}
	bound := h.assign(assignRequest("u3", "org-1", order...))
	if !slices.Equal(bound.SignedFields, order) {
		t.Fatalf("signed_fields %v, want request order %v", bound.SignedFields, order)
	}
	if err := keycrypto.VerifySignature(keys, bound.signed()); err != nil {
		t.Fatalf("signature over signed_payload does not verify: %v", err)
	}
	// JCS: keys sorted, no whitespace, public_key included.
	wantPrefix := `{"external_customer_id":"org-1","external_package_id":"pkg-456","key_id":"` + bound.KeyID + `","public_key":"` + bound.PublicKey + `","user_id":"`
	if !strings.HasPrefix(bound.SignedPayload, wantPrefix) || !strings.HasSuffix(bound.SignedPayload, `"}`) {
		t.Fatalf("signed_payload is not the canonical form:\n%s", bound.SignedPayload)
	}
	// The signature does not cover the hex alone when a payload is signed.
	tampered := bound.signed()
	tampered.SignedPayload = ""
	if err := keycrypto.VerifySignature(keys, tampered); !errors.Is(err, keycrypto.ErrSignatureInvalid) {
		t.Fatalf("signature verified over the wrong bytes: %v", err)
	}

	// user_id is the emulator's uuid for the user, stable per (customer,
	// user_identifier), never the identifier itself.
	var userID string
	for _, k := range h.inspect.Keys(t) {
		if k.UserIdentifier == "u3" {
			userID = k.UserID
		}
	}
	if !strings.Contains(bound.SignedPayload, `"user_id":"`+userID+`"`) || len(userID) != 36 {
		t.Fatalf("user_id %q not bound in %s", userID, bound.SignedPayload)
	}
}
