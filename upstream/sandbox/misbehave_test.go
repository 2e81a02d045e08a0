package sandbox_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestMisbehave checks each misbehaviour breaks exactly what a verifying
// client must catch, and that the key itself stays usable (so a client that
// skipped verification would go on to encrypt to it).
func TestMisbehave(t *testing.T) {
	fields := []string{"external_customer_id", "external_package_id", "key_id", "key_fingerprint"}
	cases := []struct {
		mode     string
		signWith []string
		// wantVerify is the VerifySignature error (nil = verifies).
		wantVerify error
		// wantBinding is the CheckBinding error after a verified signature.
		wantBinding error
	}{
		{mode: "", signWith: fields},
		{mode: "", signWith: nil},
		{mode: sandbox.MisbehaveBadSignature, signWith: fields, wantVerify: keycrypto.ErrSignatureInvalid},
		{mode: sandbox.MisbehaveBadSignature, signWith: nil, wantVerify: keycrypto.ErrSignatureInvalid},
		{mode: sandbox.MisbehaveWrongBinding, signWith: fields, wantBinding: keycrypto.ErrBindingMismatch},
		{mode: sandbox.MisbehaveSwappedKey, signWith: fields, wantBinding: keycrypto.ErrBindingMismatch},
		{mode: sandbox.MisbehaveSwappedKey, signWith: nil, wantVerify: keycrypto.ErrSignatureInvalid},
	}
	for _, tc := range cases {
		name := tc.mode
		if name == "" {
			name = "well-behaved"
		}
		if tc.signWith == nil {
			name += "/no sign_with"
		}
		t.Run(name, func(t *testing.T) {
			h := start(t, sandbox.Config{Misbehave: tc.mode})
			a := h.assign(assignRequest("alice", "org-1", tc.signWith...))
			err := keycrypto.VerifySignature(h.srv.VerificationKeys().Keys, a.signed())
			if !errors.Is(err, tc.wantVerify) || (err == nil) != (tc.wantVerify == nil) {
				t.Fatalf("VerifySignature: %v, want %v", err, tc.wantVerify)
			}
			if err == nil && tc.signWith != nil {
				pub, perr := keycrypto.ParsePublicKeyHex(a.PublicKey)
				if perr != nil {
					t.Fatal(perr)
				}
				err = keycrypto.CheckBinding(a.signed(), keycrypto.Binding{Fields: tc.signWith, Values: map[string]string{
					"external_customer_id": "org-1", "external_package_id": "pkg-456",
					"key_id": a.KeyID, "key_fingerprint": pub.Fingerprint(),
				}})
				if !errors.Is(err, tc.wantBinding) || (err == nil) != (tc.wantBinding == nil) {
					t.Fatalf("CheckBinding: %v, want %v\npayload %s", err, tc.wantBinding, a.SignedPayload)
				}
			}
			switch tc.mode {
			case sandbox.MisbehaveWrongBinding:
				if !strings.Contains(a.SignedPayload, `"external_customer_id":"org-1-`) || a.CustomerID != "org-1" {
					t.Errorf("wrong-binding should bind another customer id only in the payload: %s", a.SignedPayload)
				}
			case sandbox.MisbehaveSwappedKey:
				if tc.signWith != nil && strings.Contains(a.SignedPayload, a.PublicKey) {
					t.Error("swapped-key signed the returned key")
				}
			}
			// Everything else behaves: the returned key is the stored one.
			data, checksum := seal(t, a.PublicKey, []byte("still works"))
			resp := h.postJSON(sandbox.PathSecureData, sandbox.DevPartnerToken, map[string]any{
				"public_key": a.PublicKey, "data": data, "checksum": checksum})
			if resp.status != 200 {
				t.Fatalf("secure/data under %q: %d %s", tc.mode, resp.status, resp.body)
			}
		})
	}
}

// TestMisbehaveUnknown rejects an unknown mode at construction.
func TestMisbehaveUnknown(t *testing.T) {
	if _, err := sandbox.New(sandbox.Config{Misbehave: "flaky"}); err == nil || !strings.Contains(err.Error(), "bad-signature") {
		t.Fatalf("New with an unknown mode: %v", err)
	}
}
