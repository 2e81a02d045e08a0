package keycrypto_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

func verificationKey(i int) keycrypto.VerificationKey {
	return keycrypto.VerificationKey{
		KID:      fmt.Sprintf("test-%c", 'a'+i),
		Key:      &testkeys.EC(i).PublicKey,
		Purposes: []string{keycrypto.PurposeAssignmentSig},
	}
}

func sign(t *testing.T, i int, msg string) string {
	t.Helper()
	sig, err := keycrypto.SignES256(rand.Reader, testkeys.EC(i), []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// p1363 re-encodes a DER signature as raw r||s, the JWS form the enclave
// does not use.
func p1363(t *testing.T, sig string) string {
	t.Helper()
	der, _ := base64.StdEncoding.DecodeString(sig)
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	rs.R.FillBytes(raw[:32])
	rs.S.FillBytes(raw[32:])
	return base64.StdEncoding.EncodeToString(raw)
}

func TestVerifySignature(t *testing.T) {
	v := loadRSAVector(t)
	payload := `{"key_id":"k-1","public_key":"` + v.hex + `"}`
	overHex := sign(t, 0, v.hex)
	overPayload := sign(t, 0, payload)
	keys := []keycrypto.VerificationKey{verificationKey(0)}
	// A base64url copy differs only if the signature has '+' or '/'; a
	// random signature of 96 characters almost always does.
	withPlusOrSlash := overHex
	for try := 0; !strings.ContainsAny(withPlusOrSlash, "+/"); try++ {
		if try == 50 {
			t.Fatal("no signature with '+' or '/' in 50 tries")
		}
		withPlusOrSlash = sign(t, 0, v.hex)
	}
	urlSafe := strings.NewReplacer("+", "-", "/", "_").Replace(withPlusOrSlash)

	for _, tc := range []struct {
		name    string
		keys    []keycrypto.VerificationKey
		a       keycrypto.SignedAssignment
		wantErr error
		want    string
	}{
		{"over the public key hex", keys, keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: overHex}, nil, ""},
		{"over the payload", keys, keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: overPayload, SignedPayload: payload}, nil, ""},
		{"right key last of three", []keycrypto.VerificationKey{verificationKey(1), verificationKey(2), verificationKey(0)},
			keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: overHex}, nil, ""},
		{"no keys", nil, keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: overHex}, keycrypto.ErrNoVerificationKey, ""},
		{"only keys without material", []keycrypto.VerificationKey{{KID: "x"}},
			keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: overHex}, keycrypto.ErrNoVerificationKey, "P-256"},
		{"signed by another key", []keycrypto.VerificationKey{verificationKey(1)},
			keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: overHex}, keycrypto.ErrSignatureInvalid, "1 tried"},
		{"hex signature presented with a payload", keys,
			keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: overHex, SignedPayload: payload}, keycrypto.ErrSignatureInvalid, "signed_payload"},
		{"payload re-serialised with spaces", keys,
			keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: overPayload, SignedPayload: strings.ReplaceAll(payload, ":", ": ")},
			keycrypto.ErrSignatureInvalid, ""},
		{"uppercased hex", keys, keycrypto.SignedAssignment{PublicKeyHex: strings.ToUpper(v.hex), Signature: overHex}, keycrypto.ErrSignatureInvalid, "public_key hex"},
		{"empty signature", keys, keycrypto.SignedAssignment{PublicKeyHex: v.hex}, keycrypto.ErrSignatureInvalid, "empty"},
		{"base64url signature", keys, keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: urlSafe}, keycrypto.ErrSignatureInvalid, ""},
		{"unpadded base64", keys, keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: strings.TrimRight(overHex, "=") + "A"}, keycrypto.ErrSignatureInvalid, ""},
		{"line break", keys, keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: overHex[:10] + "\n" + overHex[10:]}, keycrypto.ErrSignatureInvalid, "line break"},
		{"IEEE P1363 r||s", keys, keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: p1363(t, overHex)}, keycrypto.ErrSignatureInvalid, ""},
		{"huge signature", keys, keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: strings.Repeat("AAAA", 100)}, keycrypto.ErrSignatureInvalid, "characters"},
		{"nothing signed", keys, keycrypto.SignedAssignment{Signature: overHex}, keycrypto.ErrSignatureInvalid, "neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := keycrypto.VerifySignature(tc.keys, tc.a)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestSignES256RejectsBadKeys(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*ecdsa.PrivateKey{nil, p384} {
		if _, err := keycrypto.SignES256(rand.Reader, k, []byte("m")); !errors.Is(err, keycrypto.ErrInvalidSigningKey) {
			t.Fatalf("err = %v, want ErrInvalidSigningKey", err)
		}
	}
}

func TestGenerateSigningKey(t *testing.T) {
	k, err := keycrypto.GenerateSigningKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if k.Curve != elliptic.P256() {
		t.Fatalf("curve %s, want P-256", k.Curve.Params().Name)
	}
	sig, err := keycrypto.SignES256(nil, k, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	keys := []keycrypto.VerificationKey{{Key: &k.PublicKey}}
	if err := keycrypto.VerifySignature(keys, keycrypto.SignedAssignment{PublicKeyHex: "m", Signature: sig}); err != nil {
		t.Fatal(err)
	}
}
