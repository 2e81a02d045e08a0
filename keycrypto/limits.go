package keycrypto

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
