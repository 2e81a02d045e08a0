package service

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service/registry"
)

// receiptCacheSize bounds the cache of verified receipts: one entry (a
// digest) per key, so a busy registry's keys fit without re-verifying.
const receiptCacheSize = 16384

// Results of recovery.key_receipt.checks: "valid", "cached" (verified
// before, row unchanged since) or the check that failed.
const (
	receiptValid            = "valid"
	receiptCached           = "cached"
	receiptMissing          = "missing"
	receiptInvalidPublicKey = "invalid_public_key"
	receiptInvalidSignature = "invalid_signature"
	receiptBindingMismatch  = "binding_mismatch"
	receiptKeysUnavailable  = "keys_unavailable"
)

// receiptCache remembers, per key id, the recorded row that last verified:
// its digest, and its public key parsed and as PEM, so that a key in use is
// parsed once rather than on every SecureData, AssignKey or GetKey. A
// recorded key never changes, so a row whose digest differs was changed in
// the registry and is verified again (and fails); the cached key is only
// ever the verified row's.
type receiptCache = lru.Cache[string, *verifiedKey]

// verifiedKey is a recorded row whose receipt verified.
type verifiedKey struct {
	digest [sha256.Size]byte
	pub    *keycrypto.PublicKey
	pem    string
}

func newReceiptCache() *receiptCache {
	c, err := lru.New[string, *verifiedKey](receiptCacheSize)
	if err != nil {
		panic(err) // only for a size < 1
	}
	return c
}

// checkKeyReceipt verifies, before a recorded key is used or returned, that
// the row still verifies: the enclave signature recorded with it verifies
// over its signed payload with a trusted key (the one of its signing key
// id), and the payload binds this row's public key, organisation,
// package, key id and fingerprint. A row whose public key (or anything
// bound) was changed in the database, or that has no receipt (recorded
// before migration 0007), is refused with KEY_RECEIPT_INVALID, logged at
// ERROR and counted; it is never used. It returns the verified row's
// public key, parsed, and its PEM.
func (s *Server) checkKeyReceipt(ctx context.Context, key *registry.Key) (*verifiedKey, error) {
	digest := rowDigest(key)
	if v, ok := s.receipts.Get(key.KeyID); ok && v.digest == digest {
		s.metrics.receiptCheck(ctx, receiptCached)
		return v, nil
	}
	pub, result, err := s.verifyReceipt(ctx, key)
	s.metrics.receiptCheck(ctx, result)
	switch {
	case err == nil:
		v := &verifiedKey{digest: digest, pub: pub, pem: pub.PEM()}
		s.receipts.Add(key.KeyID, v)
		return v, nil
	case result == receiptKeysUnavailable:
		return nil, fail(ReasonVerificationKeysUnavailable, err)
	}
	s.log.LogAttrs(ctx, slog.LevelError, "recorded key does not verify against its receipt: key refused",
		slog.String("key_id", key.KeyID),
		slog.String("customer_id", key.CustomerID),
		slog.String("check", result),
		slog.String("error", err.Error()))
	f := fail(ReasonKeyReceiptInvalid, fmt.Errorf("key %s: %s: %w", key.KeyID, result, err))
	f.metadata = map[string]string{"key_id": key.KeyID}
	return nil, f
}

// verifyReceipt runs the checks in order and names the first that fails;
// it returns the row's public key, parsed, when all pass.
func (s *Server) verifyReceipt(ctx context.Context, key *registry.Key) (*keycrypto.PublicKey, string, error) {
	r := key.Receipt
	if r.Signature == "" {
		return nil, receiptMissing, errors.New("the key was recorded without its enclave signature (before receipts were kept): an operator must re-import it")
	}
	pub, err := keycrypto.ParsePublicKeyHex(key.PublicKeyHex)
	if err != nil {
		return nil, receiptInvalidPublicKey, err
	}
	signed := keycrypto.SignedAssignment{
		PublicKeyHex:  key.PublicKeyHex,
		Signature:     r.Signature,
		SignedPayload: r.SignedPayload,
		SignedFields:  signWith,
	}
	keys, err := s.keys.Keys(ctx)
	if err != nil {
		return nil, receiptKeysUnavailable, err
	}
	_, err = keycrypto.VerifySignatureKey(withKID(keys, r.SigningKeyID), signed)
	if errors.Is(err, keycrypto.ErrSignatureInvalid) || errors.Is(err, keycrypto.ErrNoVerificationKey) {
		// As at assignment: the cached set may predate the signing key.
		refreshed, rerr := s.keys.Refresh(ctx)
		if rerr != nil {
			return nil, receiptKeysUnavailable, fmt.Errorf("%w (refreshing the verification keys failed: %w)", err, rerr)
		}
		_, err = keycrypto.VerifySignatureKey(withKID(refreshed, r.SigningKeyID), signed)
	}
	if err != nil {
		return nil, receiptInvalidSignature, err
	}
	// NOTE: the fingerprint is computed from the row's public key, never
	// read from the row: both must be what the enclave signed.
	if pub.Fingerprint() != key.Fingerprint {
		return nil, receiptBindingMismatch, errors.New("the recorded fingerprint is not the recorded public key's")
	}
	err = keycrypto.CheckBinding(signed, keycrypto.Binding{
		Fields: signWith,
		Values: map[string]string{
			"external_customer_id": key.CustomerID,
			"external_package_id":  key.PackageID,
			"key_id":               key.KeyID,
			"key_fingerprint":      pub.Fingerprint(),
		},
	})
	if err != nil {
		return nil, receiptBindingMismatch, err
	}
	return pub, receiptValid, nil
}

// withKID is the keys whose kid is kid; all of them when kid is "" (a PEM
// key has none).
func withKID(keys []keycrypto.VerificationKey, kid string) []keycrypto.VerificationKey {
	if kid == "" {
		return keys
	}
	var out []keycrypto.VerificationKey
	for _, k := range keys {
		if k.KID == kid {
			out = append(out, k)
		}
	}
	return out
}

// rowDigest is the SHA-256 of everything a receipt check reads from a
// row, each field length-prefixed so that no two rows digest alike.
func rowDigest(k *registry.Key) [sha256.Size]byte {
	fields := [...]string{k.KeyID, k.PublicKeyHex, k.Fingerprint, k.CustomerID, k.PackageID,
		k.Receipt.Signature, k.Receipt.SignedPayload, k.Receipt.SigningKeyID}
	n := 0
	for _, f := range fields {
		n += 8 + len(f)
	}
	buf := make([]byte, 0, n)
	for _, f := range fields {
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(f)))
		buf = append(buf, f...)
	}
	return sha256.Sum256(buf)
}
