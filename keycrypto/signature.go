package keycrypto

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// SignedAssignment is the signature part of an assign-key response.
type SignedAssignment struct {
	// PublicKeyHex is the response's `public_key`, exactly as received.
	PublicKeyHex string
	// Signature is the response's `signature` (standard base64 of ASN.1 DER ECDSA).
	Signature string
	// SignedPayload is the response's `signed_payload` bytes exactly as
	// received ("" when sign_with was not sent).
	SignedPayload string
	// SignedFields is the response's `signed_fields`.
	SignedFields []string
}

// SignedBytes is what the enclave signed: the exact bytes of SignedPayload
// when there is one, otherwise the ASCII bytes of the hex public key string
// (not the decoded key). Verifying anything else, such as a re-serialised
// payload, is the mistake this method exists to prevent.
func (a SignedAssignment) SignedBytes() []byte {
	if a.SignedPayload != "" {
		return []byte(a.SignedPayload)
	}
	return []byte(a.PublicKeyHex)
}

// maxSignatureLen bounds the base64 we decode: an ASN.1 DER P-256 signature
// is at most 72 bytes (96 base64 characters); allow slack, refuse garbage.
const maxSignatureLen = 256

// VerifySignature checks the ES256 signature over SignedPayload (or, when
// it is empty, over the ASCII bytes of PublicKeyHex) with each key in turn;
// nil if any verifies. ErrNoVerificationKey if keys is empty,
// ErrSignatureInvalid otherwise.
//
// The response carries no kid, so during a rotation every eligible key is
// tried. keys must already be filtered with KeySet.Eligible; keys that are
// not P-256 are skipped. The recovery key in the response is never used to
// verify its own signature.
func VerifySignature(keys []VerificationKey, a SignedAssignment) error {
	_, err := VerifySignatureKey(keys, a)
	return err
}

// VerifySignatureKey is VerifySignature returning the key that verified,
// whose KID a receipt records.
func VerifySignatureKey(keys []VerificationKey, a SignedAssignment) (VerificationKey, error) {
	if len(keys) == 0 {
		return VerificationKey{}, ErrNoVerificationKey
	}
	sig, err := decodeSignature(a.Signature)
	if err != nil {
		return VerificationKey{}, fmt.Errorf("%w: %w", ErrSignatureInvalid, err)
	}
	msg := a.SignedBytes()
	if len(msg) == 0 {
		return VerificationKey{}, fmt.Errorf("%w: neither signed_payload nor public_key is present", ErrSignatureInvalid)
	}
	digest := sha256.Sum256(msg)
	usable := 0
	for _, k := range keys {
		if k.Key == nil || k.Key.Curve != elliptic.P256() {
			continue
		}
		usable++
		if ecdsa.VerifyASN1(k.Key, digest[:], sig) {
			return k, nil
		}
	}
	if usable == 0 {
		return VerificationKey{}, fmt.Errorf("%w: none of the %d keys is a P-256 key", ErrNoVerificationKey, len(keys))
	}
	what := "public_key hex"
	if a.SignedPayload != "" {
		what = "signed_payload"
	}
	return VerificationKey{}, fmt.Errorf("%w: no eligible key (%d tried) verifies the signature over the %s", ErrSignatureInvalid, usable, what)
}

// decodeSignature decodes strict standard base64 (padding required, no
// line breaks).
func decodeSignature(s string) ([]byte, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("signature is empty")
	case len(s) > maxSignatureLen:
		return nil, fmt.Errorf("signature is %d characters, far more than an ES256 signature", len(s))
	case strings.ContainsAny(s, "\r\n"):
		return nil, fmt.Errorf("signature contains a line break")
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("signature is not standard base64 (%w)", err)
	}
	return sig, nil
}

// GenerateSigningKey makes a P-256 enclave signing key.
// Since Go 1.26 random is ignored and a secure source is always used.
func GenerateSigningKey(random io.Reader) (*ecdsa.PrivateKey, error) {
	if random == nil {
		random = rand.Reader
	}
	return ecdsa.GenerateKey(elliptic.P256(), random)
}

// SignES256 signs SHA-256(msg) with priv; standard base64 of ASN.1 DER.
func SignES256(random io.Reader, priv *ecdsa.PrivateKey, msg []byte) (string, error) {
	if priv == nil || priv.Curve != elliptic.P256() {
		return "", fmt.Errorf("%w: want a P-256 private key", ErrInvalidSigningKey)
	}
	if random == nil {
		random = rand.Reader
	}
	digest := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(random, priv, digest[:])
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidSigningKey, err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}
