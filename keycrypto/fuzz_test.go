package keycrypto_test

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

// Fuzz targets: never panic, reject with the right sentinel, and anything
// accepted survives a round trip through the package's own encoders. Seeds
// are the openssl vectors and the shapes of the classic mistakes.

func FuzzParsePublicKeyHex(f *testing.F) {
	v := loadRSAVector(f)
	pkcs1 := hex.EncodeToString(mustMarshalPKCS1(f, 0))
	for _, s := range []string{
		v.hex, strings.ToUpper(v.hex), v.hex[:len(v.hex)-2], v.hex + "00", v.hex[2:], v.hex[:len(v.hex)-1],
		pkcs1, hex.EncodeToString(mustSPKI(f, &testkeys.EC(0).PublicKey)), "", "zz", "3080", "30820222",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := keycrypto.ParsePublicKeyHex(s)
		if err != nil {
			if !errors.Is(err, keycrypto.ErrInvalidPublicKey) || k != nil {
				t.Fatalf("err = %v, key %v", err, k)
			}
			return
		}
		if k.Hex() != strings.ToLower(s) || len(k.DER) != keycrypto.SPKIDERLen {
			t.Fatal("accepted hex does not round-trip to itself")
		}
		back, err := keycrypto.ParsePublicKeyPEM([]byte(k.PEM()))
		if err != nil || back.Hex() != k.Hex() {
			t.Fatalf("PEM of an accepted key does not parse back: %v", err)
		}
		if _, err := keycrypto.Encrypt(rand.Reader, k, []byte("x")); err != nil {
			t.Fatalf("accepted key cannot encrypt: %v", err)
		}
	})
}

func FuzzParsePublicKeyPEM(f *testing.F) {
	v := loadRSAVector(f)
	der, _ := hex.DecodeString(v.hex)
	for _, s := range []string{
		v.pem, strings.ReplaceAll(v.pem, "\n", "\r\n"), v.pem + v.pem, v.pem + "x", "  \n" + v.pem,
		pemBlock("RSA PUBLIC KEY", mustMarshalPKCS1(f, 0), nil), pemBlock("PUBLIC KEY", der[:len(der)-1], nil),
		pemBlock("PUBLIC KEY", der[1:], nil), pemBlock("PUBLIC KEY", append(der, 0), nil),
		pemBlock("PUBLIC KEY", der, map[string]string{"A": "b"}), readTestdata(f, "ecp256-00.pub.pem"), "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := keycrypto.ParsePublicKeyPEM(b)
		if err != nil {
			if !errors.Is(err, keycrypto.ErrInvalidPublicKey) || k != nil {
				t.Fatalf("err = %v, key %v", err, k)
			}
			return
		}
		again, err := keycrypto.ParsePublicKeyPEM([]byte(k.PEM()))
		if err != nil || again.Hex() != k.Hex() {
			t.Fatalf("PEM() of an accepted key does not parse back: %v", err)
		}
		byHex, err := keycrypto.ParsePublicKeyHex(k.Hex())
		if err != nil || byHex.PEM() != k.PEM() {
			t.Fatalf("Hex() of an accepted key does not parse back: %v", err)
		}
	})
}

func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(readTestdata(f, "jwks.golden.json")))
	f.Add(jwksDoc(f, jwkEntry(0), with(jwkEntry(1), "coincover:validFrom", "2026-07-01T13:59:59.25+02:00")))
	f.Add(jwksDoc(f, with(jwkEntry(0), "kty", "RSA"), without(jwkEntry(1), "coincover:purposes")))
	f.Add(jwksDoc(f, with(jwkEntry(0), "y", offCurveY())))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[null]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := keycrypto.ParseJWKS(b)
		if err != nil {
			if !errors.Is(err, keycrypto.ErrInvalidJWKS) || set != nil {
				t.Fatalf("err = %v, set %v", err, set)
			}
			return
		}
		jwks := make([]keycrypto.JWK, len(set.Keys))
		for i, k := range set.Keys {
			if k.Key == nil || k.Key.Curve.Params().Name != "P-256" {
				t.Fatalf("key %d is not P-256", i)
			}
			jwks[i] = keycrypto.JWK(k)
			if jwks[i].KID == "" {
				jwks[i].KID = "unnamed" // MarshalJWKS requires one
			}
		}
		out, err := keycrypto.MarshalJWKS(jwks)
		if err != nil {
			t.Fatalf("accepted set does not marshal: %v", err)
		}
		back, err := keycrypto.ParseJWKS(out)
		if err != nil {
			t.Fatalf("marshalled set does not parse: %v\n%s", err, out)
		}
		if len(back.Keys) != len(set.Keys) {
			t.Fatalf("%d keys back, want %d", len(back.Keys), len(set.Keys))
		}
		for i, k := range set.Keys {
			g := back.Keys[i]
			if (k.KID != "" && g.KID != k.KID) || !g.Key.Equal(k.Key) || !g.ValidFrom.Equal(k.ValidFrom) || !slices.Equal(g.Purposes, k.Purposes) {
				t.Fatalf("key %d changed in the round trip: %+v → %+v", i, k, g)
			}
		}
	})
}

func FuzzCheckBinding(f *testing.F) {
	v := loadRSAVector(f)
	honest, _ := keycrypto.CanonicalJSON(map[string]string{"public_key": v.hex, "external_customer_id": "cust-42", "key_id": "k-1"})
	const fields = "external_customer_id,key_id"
	f.Add(string(honest), fields, v.hex, "cust-42", "k-1")
	f.Add(string(honest), "key_id,external_customer_id", v.hex, "cust-42", "k-1")
	f.Add(`{"public_key":"ab","external_customer_id":"c","external_customer_id":"c","key_id":"k"}`, fields, "ab", "c", "k")
	f.Add(`{"public_key":"ab","external_customer_id":"<&>\u2028","key_id":"\ud800"}`, fields, "ab", "<&>\u2028", "\ufffd")
	f.Add(`{"public_key":"ab","external_customer_id":1,"key_id":"k"}`, fields, "ab", "1", "k")
	f.Add(`[]`, fields, "", "", "")
	f.Add("", "", "ab", "c", "k")
	f.Fuzz(func(t *testing.T, payload, signedFields, pk, customer, keyID string) {
		var sf []string
		if signedFields != "" {
			sf = strings.Split(signedFields, ",")
		}
		a := keycrypto.SignedAssignment{PublicKeyHex: pk, SignedPayload: payload, SignedFields: sf}
		b := keycrypto.Binding{
			Fields: []string{"external_customer_id", "key_id"},
			Values: map[string]string{"external_customer_id": customer, "key_id": keyID},
		}
		err := keycrypto.CheckBinding(a, b)
		if err != nil {
			if !errors.Is(err, keycrypto.ErrBindingMismatch) {
				t.Fatalf("err = %v, want ErrBindingMismatch", err)
			}
			return
		}
		// Accepted: the payload says exactly what we expected, to any parser.
		var m map[string]string
		if err := json.Unmarshal([]byte(payload), &m); err != nil {
			t.Fatalf("accepted payload is not a JSON object of strings: %v", err)
		}
		want := map[string]string{"public_key": pk, "external_customer_id": customer, "key_id": keyID}
		if len(m) != len(want) {
			t.Fatalf("accepted payload has %d members, want %d", len(m), len(want))
		}
		for k, v := range want {
			if m[k] != v {
				t.Fatalf("accepted payload's %q is not the expected value", k)
			}
		}
		canon, err := keycrypto.CanonicalJSON(m)
		if err != nil {
			t.Fatal(err)
		}
		a.SignedPayload = string(canon)
		if err := keycrypto.CheckBinding(a, b); err != nil {
			t.Fatalf("canonical form of an accepted payload is rejected: %v", err)
		}
	})
}

func mustMarshalPKCS1(tb testing.TB, i int) []byte {
	tb.Helper()
	return x509.MarshalPKCS1PublicKey(&testkeys.RSA(i).PublicKey)
}
