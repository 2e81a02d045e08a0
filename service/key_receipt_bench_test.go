package service

import (
	"log/slog"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
)

// BenchmarkCheckKeyReceipt is the cost checkKeyReceipt adds to every use
// of a key: impl=verify re-verifies the row each time (the ECDSA
// verification and binding check a cache miss pays), impl=cached is what
// every use after the first pays (a digest of the row and an LRU lookup).
//
//	go test -run '^$' -bench CheckKeyReceipt -count 6 ./service/
func BenchmarkCheckKeyReceipt(b *testing.B) {
	signer := testkeys.EC(0)
	pub, err := keycrypto.PublicKeyFromPrivate(testkeys.RSA(0))
	if err != nil {
		b.Fatal(err)
	}
	key := &registry.Key{
		KeyTerms:     registry.KeyTerms{CustomerID: "acme", PackageID: "gold"},
		KeyID:        "3f192313-8e0c-4d5e-9a51-0b8f5d1c2a77",
		PublicKeyHex: pub.Hex(),
		Fingerprint:  pub.Fingerprint(),
	}
	payload, err := keycrypto.CanonicalJSON(map[string]string{
		"public_key": key.PublicKeyHex, "external_customer_id": key.CustomerID, "external_package_id": key.PackageID,
		"key_id": key.KeyID, "key_fingerprint": key.Fingerprint,
	})
	if err != nil {
		b.Fatal(err)
	}
	sig, err := keycrypto.SignES256(nil, signer, payload)
	if err != nil {
		b.Fatal(err)
	}
	key.Receipt = registry.Receipt{Signature: sig, SignedPayload: string(payload), SigningKeyID: "enclave-signing-key-v1"}
	keys := upstream.NewStaticKeySource(&keycrypto.KeySet{Keys: []keycrypto.VerificationKey{{
		KID: "enclave-signing-key-v1", Key: &signer.PublicKey, Purposes: []string{keycrypto.PurposeAssignmentSig},
	}}})
	s := New(Config{Upstream: &upstream.Client{}, Keys: keys, Registry: &registry.Store{}, Logger: slog.New(slog.DiscardHandler)})
	if _, err := s.checkKeyReceipt(b.Context(), key); err != nil {
		b.Fatalf("the benchmark's receipt does not verify: %v", err)
	}
	b.Run("impl=verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.receipts.Purge()
			if _, err := s.checkKeyReceipt(b.Context(), key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.checkKeyReceipt(b.Context(), key); err != nil {
				b.Fatal(err)
			}
		}
	})
}
