package upstream

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/walletprovider/recoveryservice/keycrypto"
)

// VerificationKeyFingerprint is the pin of an enclave signing key: the
// lowercase hex SHA-256 of its DER SubjectPublicKeyInfo, as keycrypto
// fingerprints recovery keys. An operator recomputes it from the PEM key
// with `openssl pkey -pubin -outform DER | sha256sum`.
func VerificationKeyFingerprint(k *ecdsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "", fmt.Errorf("encoding a verification key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// ParseVerificationKeyFingerprints reads a comma-separated list of SHA-256
// fingerprints (64 hex digits each; case and ":" separators ignored) and
// returns them lowercase, without separators, duplicates removed.
func ParseVerificationKeyFingerprints(list string) ([]string, error) {
	var out []string
	var errs []error
	for entry := range strings.SplitSeq(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		fp := strings.ToLower(strings.ReplaceAll(entry, ":", ""))
		if b, err := hex.DecodeString(fp); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("%q is not a SHA-256 fingerprint (64 hex digits)", entry))
			continue
		}
		if !slices.Contains(out, fp) {
			out = append(out, fp)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no fingerprint listed")
	}
	return out, nil
}

// PinKeys serves only those keys of src whose VerificationKeyFingerprint is
// listed: a key the JWKS (or a key file) adds, whoever added it, is never
// used to verify an enclave signature until an operator pins it. When no
// served key is pinned the result is keycrypto.ErrNoVerificationKey, so
// nothing is verified (and readiness fails) rather than anything trusted.
func PinKeys(src KeySource, fingerprints []string) KeySource {
	return &pinnedKeys{src: src, pinned: slices.Clone(fingerprints)}
}

type pinnedKeys struct {
	src    KeySource
	pinned []string
}

func (p *pinnedKeys) Keys(ctx context.Context) ([]keycrypto.VerificationKey, error) {
	keys, err := p.src.Keys(ctx)
	if err != nil {
		return nil, err
	}
	return p.filter(keys)
}

func (p *pinnedKeys) Refresh(ctx context.Context) ([]keycrypto.VerificationKey, error) {
	keys, err := p.src.Refresh(ctx)
	if err != nil {
		return nil, err
	}
	return p.filter(keys)
}

// filter keeps the pinned keys.
func (p *pinnedKeys) filter(keys []keycrypto.VerificationKey) ([]keycrypto.VerificationKey, error) {
	out := make([]keycrypto.VerificationKey, 0, len(keys))
	for _, k := range keys {
		fp, err := VerificationKeyFingerprint(k.Key)
		if err == nil && slices.Contains(p.pinned, fp) {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: none of the %d verification keys served has a pinned fingerprint", keycrypto.ErrNoVerificationKey, len(keys))
	}
	return out, nil
}
