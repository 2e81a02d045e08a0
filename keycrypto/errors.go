package keycrypto

import "errors"

// Sentinel errors. Every error this package returns wraps exactly one of
// them (test with errors.Is); the wrapping message says precisely what is
// wrong, never echoing secret material.
var (
	// ErrInvalidPublicKey: the hex/DER/PEM is not an RSA-4096 SPKI (odd
	// length, non-hex, truncated or trailing bytes, PKCS#1 instead of SPKI,
	// not RSA, wrong size, bad PEM armour).
	ErrInvalidPublicKey = errors.New("invalid public key")
	// ErrPlaintextTooLarge: more than MaxPlaintextLen bytes.
	ErrPlaintextTooLarge = errors.New("plaintext too large for one RSA-4096 OAEP-SHA256 block")
	// ErrEmptyPlaintext: zero bytes of plaintext.
	ErrEmptyPlaintext = errors.New("plaintext is empty")
	// ErrDecrypt: ciphertext does not decrypt under OAEP-SHA256/MGF1-SHA256.
	ErrDecrypt = errors.New("ciphertext does not decrypt")
	// ErrInvalidChecksum: not 64 hex characters.
	ErrInvalidChecksum = errors.New("checksum is not 64 hex characters")
	// ErrChecksumMismatch: checksum does not equal SHA-256 of the plaintext.
	ErrChecksumMismatch = errors.New("checksum does not match the plaintext")
	// ErrInvalidJWKS: the JWKS document (or a PEM verification key file) is malformed.
	ErrInvalidJWKS = errors.New("invalid verification key set")
	// ErrNoVerificationKey: no eligible verification key (purpose, validity).
	ErrNoVerificationKey = errors.New("no eligible verification key")
	// ErrSignatureInvalid: no eligible key verifies the signature, or the
	// signature is malformed.
	ErrSignatureInvalid = errors.New("enclave signature does not verify")
	// ErrBindingMismatch: the signature verifies but the signed payload does
	// not bind the expected values.
	ErrBindingMismatch = errors.New("enclave signature does not bind the expected values")
	// ErrInvalidSigningKey: an enclave-side signing key that is missing or
	// not on P-256, so nothing can be signed or published with it.
	ErrInvalidSigningKey = errors.New("invalid signing key")
	// ErrInvalidString: a string handed to CanonicalJSON is not valid UTF-8,
	// so it has no canonical JSON form.
	ErrInvalidString = errors.New("string is not valid UTF-8")
)
