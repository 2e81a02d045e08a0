package keycrypto

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// checksumHexLen is the length of a hex SHA-256 digest.
const checksumHexLen = 2 * sha256.Size

// Checksum is the lowercase hex SHA-256 of plaintext (never of ciphertext).
func Checksum(plaintext []byte) string {
	sum := sha256.Sum256(plaintext)
	return hex.EncodeToString(sum[:])
}

// ValidateChecksum checks s is 64 hex characters and returns it lowercased.
func ValidateChecksum(s string) (string, error) {
	if len(s) != checksumHexLen {
		return "", fmt.Errorf("%w: %d characters, want %d", ErrInvalidChecksum, len(s), checksumHexLen)
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return "", fmt.Errorf("%w: non-hex character at position %d", ErrInvalidChecksum, i)
		}
	}
	return strings.ToLower(s), nil
}

// VerifyChecksum checks that checksum (hex, either case) is the SHA-256 of
// plaintext, the way the enclave checks a stored backup. It exists so that
// a checksum computed over the ciphertext, one of the provider's classic
// integration mistakes, is caught before anything is sent upstream.
func VerifyChecksum(plaintext []byte, checksum string) error {
	want, err := ValidateChecksum(checksum)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(Checksum(plaintext)), []byte(want)) != 1 {
		return fmt.Errorf("%w: it is not the SHA-256 of the plaintext (was it computed over the ciphertext?)",
			ErrChecksumMismatch)
	}
	return nil
}

// Zero overwrites b with zeros; used on plaintext buffers after use.
func Zero(b []byte) { clear(b) }
