package keycrypto

// NOTE: this file fixes the package's exported API so that upstream/,
// upstream/sandbox and service/ can be written against it in parallel. Bodies
// marked "unimplemented" are filled in by the keycrypto work.

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"io"
	"time"
)

// Sizes fixed by the upstream contract for rsa4096 recovery keys.
const (
	// RSAKeyBits is the modulus size of every recovery key.
	RSAKeyBits = 4096
	// SPKIDERLen is the length of an RSA-4096 SubjectPublicKeyInfo in DER.
	SPKIDERLen = 550
	// SPKIHexLen is SPKIDERLen as hex characters.
	SPKIHexLen = 2 * SPKIDERLen
	// CiphertextLen is the size of one RSA-4096 OAEP block.
	CiphertextLen = 512
	// MaxPlaintextLen is the most plaintext one RSA-4096 OAEP-SHA256 block
	// holds: 512 - 2*32 - 2.
	MaxPlaintextLen = 446
	// PurposeAssignmentSig is the JWKS purpose a key needs to verify
	// assign-key signatures.
	PurposeAssignmentSig = "assignment-sig"
)

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
)

// PublicKey is a validated RSA-4096 recovery public key.
type PublicKey struct {
	// RSA is the parsed key.
	RSA *rsa.PublicKey
	// DER is the SubjectPublicKeyInfo bytes.
	DER []byte
}

// ParsePublicKeyHex validates and parses the upstream's `public_key` (hex of
// an RSA-4096 DER SPKI; either case accepted).
func ParsePublicKeyHex(s string) (*PublicKey, error) { panic("unimplemented") }

// ParsePublicKeyDER validates and parses an RSA-4096 DER SPKI.
func ParsePublicKeyDER(der []byte) (*PublicKey, error) { panic("unimplemented") }

// ParsePublicKeyPEM validates and parses one "PUBLIC KEY" PEM block (an
// "RSA PUBLIC KEY" PKCS#1 block is rejected with a message saying so).
func ParsePublicKeyPEM(pemBytes []byte) (*PublicKey, error) { panic("unimplemented") }

// Hex is the lowercase hex of k.DER.
func (k *PublicKey) Hex() string { panic("unimplemented") }

// PEM is k.DER as a "PUBLIC KEY" block, base64 at 64 columns, ending "\n".
func (k *PublicKey) PEM() string { panic("unimplemented") }

// Fingerprint is the lowercase hex SHA-256 of k.DER.
func (k *PublicKey) Fingerprint() string { panic("unimplemented") }

// HexToPEM converts the upstream's hex public key to PEM, validating it.
func HexToPEM(s string) (string, error) { panic("unimplemented") }

// Encrypt seals plaintext (1..MaxPlaintextLen bytes) to k with RSA-OAEP,
// SHA-256 as both OAEP and MGF1 hash, empty label; the result is
// CiphertextLen bytes. random is usually crypto/rand.Reader.
func Encrypt(random io.Reader, k *PublicKey, plaintext []byte) ([]byte, error) { panic("unimplemented") }

// Checksum is the lowercase hex SHA-256 of plaintext (never of ciphertext).
func Checksum(plaintext []byte) string { panic("unimplemented") }

// ValidateChecksum checks s is 64 hex characters and returns it lowercased.
func ValidateChecksum(s string) (string, error) { panic("unimplemented") }

// Zero overwrites b with zeros; used on plaintext buffers after use.
func Zero(b []byte) { panic("unimplemented") }

// VerificationKey is one enclave signing key trusted to verify assign-key
// signatures.
type VerificationKey struct {
	// KID is the JWKS kid ("" for PEM keys).
	KID string
	// Key is the P-256 public key.
	Key *ecdsa.PublicKey
	// Purposes from coincover:purposes (PEM keys: [PurposeAssignmentSig]).
	Purposes []string
	// ValidFrom from coincover:validFrom (zero: always valid).
	ValidFrom time.Time
}

// KeySet is a parsed JWKS (or PEM key file).
type KeySet struct {
	Keys []VerificationKey
}

// ParseJWKS parses a JWKS document. Entries that are not EC/P-256/ES256/sig
// are skipped (not an error); a structurally broken document or a P-256 entry
// whose point is not on the curve is ErrInvalidJWKS.
func ParseJWKS(data []byte) (*KeySet, error) { panic("unimplemented") }

// ParseVerificationKeysPEM parses one or more "PUBLIC KEY" PEM blocks holding
// P-256 keys (air-gapped deployments); each gets PurposeAssignmentSig.
func ParseVerificationKeysPEM(data []byte) (*KeySet, error) { panic("unimplemented") }

// Eligible returns the keys usable at now: purpose assignment-sig present and
// ValidFrom not after now.
func (s *KeySet) Eligible(now time.Time) []VerificationKey { panic("unimplemented") }

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

// VerifySignature checks the ES256 signature over SignedPayload (or, when
// it is empty, over the ASCII bytes of PublicKeyHex) with each key in turn;
// nil if any verifies. ErrNoVerificationKey if keys is empty,
// ErrSignatureInvalid otherwise.
func VerifySignature(keys []VerificationKey, a SignedAssignment) error { panic("unimplemented") }

// Binding is what a verified signature must bind: the requested sign_with
// field names in request order and the value expected for each.
type Binding struct {
	Fields []string
	Values map[string]string
}

// CheckBinding checks (after VerifySignature) that SignedFields equals
// b.Fields in order, that SignedPayload parses as a JSON object whose
// public_key equals PublicKeyHex, and that each bound field equals
// b.Values[field]. ErrBindingMismatch naming the first offending field.
func CheckBinding(a SignedAssignment, b Binding) error { panic("unimplemented") }

// --- the enclave's side, for upstream/sandbox and tests -------------------

// GenerateRecoveryKey makes an RSA-4096 key pair (about 0.7 s of CPU).
func GenerateRecoveryKey(random io.Reader) (*rsa.PrivateKey, error) { panic("unimplemented") }

// PublicKeyFromPrivate is the validated PublicKey of priv.
func PublicKeyFromPrivate(priv *rsa.PrivateKey) (*PublicKey, error) { panic("unimplemented") }

// Decrypt opens one OAEP-SHA256/MGF1-SHA256 block (ErrDecrypt on failure).
func Decrypt(priv *rsa.PrivateKey, ciphertext []byte) ([]byte, error) { panic("unimplemented") }

// CanonicalJSON is the RFC 8785 (JCS) serialisation of a flat object of
// string values: keys sorted by UTF-16 code units, JCS string escaping.
func CanonicalJSON(fields map[string]string) ([]byte, error) { panic("unimplemented") }

// GenerateSigningKey makes a P-256 enclave signing key.
func GenerateSigningKey(random io.Reader) (*ecdsa.PrivateKey, error) { panic("unimplemented") }

// SignES256 signs SHA-256(msg) with priv; standard base64 of ASN.1 DER.
func SignES256(random io.Reader, priv *ecdsa.PrivateKey, msg []byte) (string, error) {
	panic("unimplemented")
}

// JWK is a signing key to publish.
type JWK struct {
	KID       string
	Key       *ecdsa.PublicKey
	Purposes  []string
	ValidFrom time.Time
}

// MarshalJWKS publishes keys in the contract's JWKS format (kty EC, crv
// P-256, alg ES256, use sig, kid, x, y, coincover:purposes,
// coincover:validFrom as RFC 3339).
func MarshalJWKS(keys []JWK) ([]byte, error) { panic("unimplemented") }
