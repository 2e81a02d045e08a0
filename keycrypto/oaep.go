package keycrypto

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
)

// oaepOptions pins both hashes. NOTE: the MGF1 hash is set explicitly even
// though Go defaults it to the OAEP hash: an OAEP-SHA256 block with an
// MGF1-SHA1 mask (the default of many other libraries) is one of the
// provider's four classic integration mistakes, and this makes ours visibly
// SHA-256/SHA-256. The label stays empty.
var oaepOptions = rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA256}

// GenerateRecoveryKey makes an RSA-4096 key pair (about 0.7 s of CPU).
// Since Go 1.26 random is ignored and a secure source is always used.
func GenerateRecoveryKey(random io.Reader) (*rsa.PrivateKey, error) {
	if random == nil {
		random = rand.Reader
	}
	return rsa.GenerateKey(random, RSAKeyBits)
}

// Encrypt seals plaintext (1..MaxPlaintextLen bytes) to k with RSA-OAEP,
// SHA-256 as both OAEP and MGF1 hash, empty label; the result is
// CiphertextLen bytes. random is usually crypto/rand.Reader.
func Encrypt(random io.Reader, k *PublicKey, plaintext []byte) ([]byte, error) {
	if k == nil || k.RSA == nil {
		return nil, fmt.Errorf("%w: no key to encrypt to", ErrInvalidPublicKey)
	}
	if bits := k.RSA.N.BitLen(); bits != RSAKeyBits {
		return nil, fmt.Errorf("%w: RSA modulus is %d bits, want %d", ErrInvalidPublicKey, bits, RSAKeyBits)
	}
	switch n := len(plaintext); {
	case n == 0:
		return nil, ErrEmptyPlaintext
	case n > MaxPlaintextLen:
		return nil, fmt.Errorf("%w: %d bytes, at most %d fit (use a file backup for more)",
			ErrPlaintextTooLarge, n, MaxPlaintextLen)
	}
	if random == nil {
		random = rand.Reader
	}
	opts := oaepOptions
	ciphertext, err := rsa.EncryptOAEPWithOptions(random, k.RSA, plaintext, &opts)
	if err != nil {
		// crypto/rsa's errors here are about the key, never the plaintext.
		return nil, fmt.Errorf("%w: %w", ErrInvalidPublicKey, err)
	}
	return ciphertext, nil
}

// Decrypt opens one OAEP-SHA256/MGF1-SHA256 block (ErrDecrypt on failure).
func Decrypt(priv *rsa.PrivateKey, ciphertext []byte) ([]byte, error) {
	if priv == nil || priv.N == nil {
		return nil, fmt.Errorf("%w: no private key", ErrDecrypt)
	}
	if want := priv.Size(); len(ciphertext) != want {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes, want %d", ErrDecrypt, len(ciphertext), want)
	}
	opts := oaepOptions
	plaintext, err := priv.Decrypt(nil, ciphertext, &opts)
	if err != nil {
		// NOTE: crypto/rsa deliberately says no more than "decryption
		// error" (no padding oracle); neither do we.
		return nil, fmt.Errorf("%w: not an OAEP-SHA256/MGF1-SHA256 block for this key", ErrDecrypt)
	}
	return plaintext, nil
}
