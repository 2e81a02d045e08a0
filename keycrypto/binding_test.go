package keycrypto_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
)

var boundFields = []string{"external_customer_id", "external_package_id", "key_id", "key_fingerprint"}

// assignment builds what the enclave returns for an assign-key request
// with sign_with = boundFields: the payload is JCS of the values plus
// public_key, signed by pool key 0.
type assignment struct {
	hex    string
	values map[string]string
}

func newAssignment(t *testing.T) assignment {
	v := loadRSAVector(t)
	return assignment{hex: v.hex, values: map[string]string{
		"external_customer_id": "cust-42",
		"external_package_id":  "pkg-gold",
		"key_id":               "8f14e45f-ceea-467f-a8c9-0d1c1b1ffb9e",
		"key_fingerprint":      v.fingerprint,
	}}
}

// signed returns the response for payload members m (public_key included
// only if m has it) and the given signed_fields.
func signed(t *testing.T, pkHex string, m map[string]string, fields []string) keycrypto.SignedAssignment {
	t.Helper()
	payload, err := keycrypto.CanonicalJSON(m)
	if err != nil {
		t.Fatal(err)
	}
	return signedRaw(t, pkHex, string(payload), fields)
}

func signedRaw(t *testing.T, pkHex, payload string, fields []string) keycrypto.SignedAssignment {
	t.Helper()
	return keycrypto.SignedAssignment{
		PublicKeyHex:  pkHex,
		Signature:     sign(t, 0, payload),
		SignedPayload: payload,
		SignedFields:  slices.Clone(fields),
	}
}

// members is the honest payload: the expected values plus public_key.
func (a assignment) members() map[string]string {
	m := maps.Clone(a.values)
	m["public_key"] = a.hex
	return m
}

func (a assignment) binding() keycrypto.Binding {
	return keycrypto.Binding{Fields: slices.Clone(boundFields), Values: maps.Clone(a.values)}
}

func TestCheckBindingHonest(t *testing.T) {
	a := newAssignment(t)
	resp := signed(t, a.hex, a.members(), boundFields)
	keys := []keycrypto.VerificationKey{verificationKey(0)}
	if err := keycrypto.VerifySignature(keys, resp); err != nil {
		t.Fatal(err)
	}
	if err := keycrypto.CheckBinding(resp, a.binding()); err != nil {
		t.Fatalf("honest response rejected: %v", err)
	}
	// No sign_with: nothing to bind, the signature covers the hex alone.
	plain := keycrypto.SignedAssignment{PublicKeyHex: a.hex, Signature: sign(t, 0, a.hex)}
	if err := keycrypto.CheckBinding(plain, keycrypto.Binding{}); err != nil {
		t.Fatalf("response without sign_with rejected: %v", err)
	}
	// A payload bound with no fields still has to carry the right key.
	onlyKey := signed(t, a.hex, map[string]string{"public_key": a.hex}, nil)
	if err := keycrypto.CheckBinding(onlyKey, keycrypto.Binding{}); err != nil {
		t.Fatalf("payload of public_key alone rejected: %v", err)
	}
}

// TestCheckBindingLies: every response here carries a VALID enclave
// signature (checked), yet binds something other than what we asked for.
func TestCheckBindingLies(t *testing.T) {
	a := newAssignment(t)
	other := poolPublicKey(t, 9).Hex()
	keys := []keycrypto.VerificationKey{verificationKey(0)}
	honest := a.members()
	set := func(k, v string) map[string]string { m := maps.Clone(honest); m[k] = v; return m }
	drop := func(k string) map[string]string { m := maps.Clone(honest); delete(m, k); return m }
	reordered := []string{"external_package_id", "external_customer_id", "key_id", "key_fingerprint"}
	jcs := func(m map[string]string) string { b, _ := keycrypto.CanonicalJSON(m); return string(b) }

	for _, tc := range []struct {
		name string
		resp keycrypto.SignedAssignment
		want string
	}{
		{"signed_fields reordered", signed(t, a.hex, honest, reordered), `signed_fields[0] is "external_package_id"`},
		{"signed_fields with an extra field", signed(t, a.hex, honest, append(slices.Clone(boundFields), "user_id")), `unrequested extra field "user_id"`},
		{"signed_fields missing a field", signed(t, a.hex, honest, boundFields[:3]), `lacks requested field "key_fingerprint"`},
		{"payload missing a field", signed(t, a.hex, drop("key_id"), boundFields), `lacks requested field "key_id"`},
		{"payload with an unrequested field", signed(t, a.hex, set("user_id", "u-1"), boundFields), `unrequested field "user_id"`},
		{"different customer", signed(t, a.hex, set("external_customer_id", "cust-43"), boundFields), `"external_customer_id"`},
		{"different package", signed(t, a.hex, set("external_package_id", "pkg-free"), boundFields), `"external_package_id"`},
		{"customer differs only in case", signed(t, a.hex, set("external_customer_id", "CUST-42"), boundFields), `"external_customer_id"`},
		{"different key id", signed(t, a.hex, set("key_id", "00000000-0000-0000-0000-000000000000"), boundFields), `"key_id"`},
		{"fingerprint in uppercase", signed(t, a.hex, set("key_fingerprint", strings.ToUpper(a.values["key_fingerprint"])), boundFields), `"key_fingerprint"`},
		{"payload public_key is another key", signed(t, a.hex, set("public_key", other), boundFields), "differs from the response's public_key"},
		{"payload public_key uppercased", signed(t, a.hex, set("public_key", strings.ToUpper(a.hex)), boundFields), "differs from the response's public_key"},
		{"payload without public_key", signed(t, a.hex, drop("public_key"), boundFields), `no "public_key"`},
		{"signed_payload and signature of another assignment", signed(t, a.hex, map[string]string{
			"public_key": other, "external_customer_id": "cust-43", "external_package_id": "pkg-gold",
			"key_id": "0b7e5f4e-1c0d-4b9e-9d3c-5c1f2a3b4c5d", "key_fingerprint": poolPublicKey(t, 9).Fingerprint(),
		}, boundFields), "differs from the response's public_key"},
		{"duplicate member, second one honest", signedRaw(t, a.hex,
			`{"external_customer_id":"cust-evil",`+strings.TrimPrefix(jcs(honest), "{"), boundFields), "appears more than once"},
		{"non-string value", signedRaw(t, a.hex, strings.Replace(jcs(honest), `"key_id":"`+a.values["key_id"]+`"`, `"key_id":42`, 1), boundFields), `"key_id" is not a string`},
		{"nested object value", signedRaw(t, a.hex, strings.Replace(jcs(honest), `"key_id":"`+a.values["key_id"]+`"`, `"key_id":{"v":"x"}`, 1), boundFields), `"key_id" is not a string`},
		{"null value", signedRaw(t, a.hex, strings.Replace(jcs(honest), `"key_id":"`+a.values["key_id"]+`"`, `"key_id":null`, 1), boundFields), `"key_id" is not a string`},
		{"payload an array", signedRaw(t, a.hex, `["`+a.hex+`"]`, boundFields), "not a JSON object"},
		{"trailing data", signedRaw(t, a.hex, jcs(honest)+`{}`, boundFields), "trailing data"},
		{"invalid UTF-8", signedRaw(t, a.hex, strings.Replace(jcs(honest), "cust-42", "cust-\xff42", 1), boundFields), "UTF-8"},
		{"truncated JSON", signedRaw(t, a.hex, strings.TrimSuffix(jcs(honest), "}"), boundFields), "malformed"},
		{"no payload despite sign_with", keycrypto.SignedAssignment{PublicKeyHex: a.hex, Signature: sign(t, 0, a.hex), SignedFields: boundFields}, "no signed_payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := keycrypto.VerifySignature(keys, tc.resp); err != nil {
				t.Fatalf("precondition: the lie must carry a valid signature: %v", err)
			}
			err := keycrypto.CheckBinding(tc.resp, a.binding())
			if !errors.Is(err, keycrypto.ErrBindingMismatch) {
				t.Fatalf("err = %v, want ErrBindingMismatch", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			for _, secretish := range []string{"cust-43", "cust-evil", "pkg-free", "u-1"} {
				if strings.Contains(err.Error(), secretish) {
					t.Fatalf("error %q echoes a payload value", err)
				}
			}
		})
	}
}

// TestCheckBindingReplay: an honest response for one customer, replayed as
// the answer to another customer's request, does not bind.
func TestCheckBindingReplay(t *testing.T) {
	a := newAssignment(t)
	resp := signed(t, a.hex, a.members(), boundFields)
	b := a.binding()
	b.Values["external_customer_id"] = "cust-43"
	err := keycrypto.CheckBinding(resp, b)
	if !errors.Is(err, keycrypto.ErrBindingMismatch) || !strings.Contains(err.Error(), `"external_customer_id"`) {
		t.Fatalf("replayed response: err = %v, want ErrBindingMismatch naming external_customer_id", err)
	}
}

// TestCheckBindingRequest: a Binding the caller could not have sent is an
// error, not a silent pass.
func TestCheckBindingRequest(t *testing.T) {
	a := newAssignment(t)
	resp := signed(t, a.hex, a.members(), boundFields)
	for _, tc := range []struct {
		name string
		b    keycrypto.Binding
		want string
	}{
		{"public_key requested", keycrypto.Binding{Fields: []string{"public_key"}, Values: map[string]string{"public_key": a.hex}}, `"public_key" cannot be a sign_with field`},
		{"field twice", keycrypto.Binding{Fields: []string{"key_id", "key_id"}, Values: a.values}, "requested twice"},
		{"no expected value", keycrypto.Binding{Fields: boundFields, Values: map[string]string{"key_id": "x"}}, "no expected value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := keycrypto.CheckBinding(resp, tc.b)
			if !errors.Is(err, keycrypto.ErrBindingMismatch) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrBindingMismatch saying %q", err, tc.want)
			}
		})
	}
}
