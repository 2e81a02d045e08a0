package keycrypto_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

// The benchmarks in this file come in pairs, run side by side in one
// process: sub-benchmark impl=baseline is the bare standard-library call a
// caller could make instead, impl=ours is the keycrypto function that wraps
// it with the contract's validation. bench/run.sh reports ours as a ratio of
// its baseline, so the figure is the price of the wrapper, not of RSA.

// benchPlaintext is the largest plaintext one RSA-4096 OAEP block holds,
// the worst case SecureData sends.
var benchPlaintext = []byte(strings.Repeat("s", keycrypto.MaxPlaintextLen))

// BenchmarkEncrypt compares keycrypto.Encrypt (key size and plaintext
// checks, pinned OAEP/MGF1 hashes) with a raw rsa.EncryptOAEP of the same
// bytes to the same key, both SHA-256.
func BenchmarkEncrypt(b *testing.B) {
	pub, err := keycrypto.ParsePublicKeyHex(loadRSAVector(b).hex)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("impl=baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.RSA, benchPlaintext, nil)
			if err != nil || len(ct) != keycrypto.CiphertextLen {
				b.Fatalf("rsa.EncryptOAEP: %d bytes, %v", len(ct), err)
			}
		}
	})
	b.Run("impl=ours", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ct, err := keycrypto.Encrypt(rand.Reader, pub, benchPlaintext)
			if err != nil || len(ct) != keycrypto.CiphertextLen {
				b.Fatalf("keycrypto.Encrypt: %d bytes, %v", len(ct), err)
			}
		}
	})
}

// BenchmarkChecksum compares keycrypto.Checksum (SHA-256, lowercase hex)
// with the bare sha256.Sum256 digest of the same plaintext: the difference
// is the hex encoding the wire format needs.
func BenchmarkChecksum(b *testing.B) {
	b.Run("impl=baseline", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchPlaintext)))
		for b.Loop() {
			sum := sha256.Sum256(benchPlaintext)
			if sum[0] == 0 && sum[1] == 0 && sum[2] == 0 && sum[3] == 0 {
				b.Fatal("implausible digest") // keeps the result live
			}
		}
	})
	b.Run("impl=ours", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchPlaintext)))
		for b.Loop() {
			if got := keycrypto.Checksum(benchPlaintext); len(got) != 2*sha256.Size {
				b.Fatalf("Checksum = %q", got)
			}
		}
	})
}

// BenchmarkParsePublicKeyHex compares keycrypto.ParsePublicKeyHex (hex and
// SPKI structure checks with precise errors, RSA-4096 size and exponent
// checks) with hex.DecodeString plus x509.ParsePKIXPublicKey.
func BenchmarkParsePublicKeyHex(b *testing.B) {
	keyHex := loadRSAVector(b).hex
	b.Run("impl=baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			der, err := hex.DecodeString(keyHex)
			if err != nil {
				b.Fatal(err)
			}
			parsed, err := x509.ParsePKIXPublicKey(der)
			if err != nil {
				b.Fatal(err)
			}
			if _, ok := parsed.(*rsa.PublicKey); !ok {
				b.Fatalf("parsed a %T", parsed)
			}
		}
	})
	b.Run("impl=ours", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := keycrypto.ParsePublicKeyHex(keyHex); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerifyAssignment compares what AssignKey does with an enclave
// response, keycrypto.VerifySignature then keycrypto.CheckBinding of the
// four bound fields, with the bare cryptographic check: SHA-256 of the
// signed payload and ecdsa.VerifyASN1 on an already decoded signature.
func BenchmarkVerifyAssignment(b *testing.B) {
	v := loadRSAVector(b)
	values := map[string]string{
		"external_customer_id": "cust-42",
		"external_package_id":  "pkg-gold",
		"key_id":               "8f14e45f-ceea-467f-a8c9-0d1c1b1ffb9e",
		"key_fingerprint":      v.fingerprint,
	}
	members := maps.Clone(values)
	members["public_key"] = v.hex
	payload, err := keycrypto.CanonicalJSON(members)
	if err != nil {
		b.Fatal(err)
	}
	sig, err := keycrypto.SignES256(rand.Reader, testkeys.EC(0), payload)
	if err != nil {
		b.Fatal(err)
	}
	resp := keycrypto.SignedAssignment{
		PublicKeyHex:  v.hex,
		Signature:     sig,
		SignedPayload: string(payload),
		SignedFields:  slices.Clone(boundFields),
	}
	binding := keycrypto.Binding{Fields: slices.Clone(boundFields), Values: values}
	keys := []keycrypto.VerificationKey{verificationKey(0)}

	b.Run("impl=baseline", func(b *testing.B) {
		der, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			b.Fatal(err)
		}
		pub := &testkeys.EC(0).PublicKey
		b.ReportAllocs()
		for b.Loop() {
			digest := sha256.Sum256(payload)
			if !ecdsa.VerifyASN1(pub, digest[:], der) {
				b.Fatal("ecdsa.VerifyASN1 rejected the enclave's signature")
			}
		}
	})
	b.Run("impl=ours", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := keycrypto.VerifySignature(keys, resp); err != nil {
				b.Fatal(err)
			}
			if err := keycrypto.CheckBinding(resp, binding); err != nil {
				b.Fatal(err)
			}
		}
	})
}
