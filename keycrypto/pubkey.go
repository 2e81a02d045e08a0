package keycrypto

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
)

// PublicKey is a validated RSA-4096 recovery public key.
type PublicKey struct {
	// RSA is the parsed key.
	RSA *rsa.PublicKey
	// DER is the SubjectPublicKeyInfo bytes.
	DER []byte
}

// PEM block types: the SPKI one we accept, the PKCS#1 one that is the most
// common wrong answer to "convert the key to PEM".
const (
	pemTypeSPKI  = "PUBLIC KEY"
	pemTypePKCS1 = "RSA PUBLIC KEY"
)

// oidRSAEncryption is the SPKI algorithm of a plain RSA key (PKCS#1 v1.5 /
// OAEP use); other OIDs are named in errors so a wrong key type is obvious.
var oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}

// knownAlgorithms names the SPKI algorithms a wrong key is likely to be,
// so the error says "EC" rather than a bare OID.
var knownAlgorithms = map[string]string{
	"1.2.840.113549.1.1.10": "RSASSA-PSS",
	"1.2.840.10045.2.1":     "EC",
	"1.2.840.10040.4.1":     "DSA",
	"1.3.101.110":           "X25519",
	"1.3.101.111":           "X448",
	"1.3.101.112":           "Ed25519",
	"1.3.101.113":           "Ed448",
}

// ParsePublicKeyHex validates and parses the upstream's `public_key` (hex of
// an RSA-4096 DER SPKI; either case accepted).
func ParsePublicKeyHex(s string) (*PublicKey, error) {
	der, err := decodeHex(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPublicKey, err)
	}
	return ParsePublicKeyDER(der)
}

// decodeHex decodes s, reporting an odd length or the position (never the
// value) of the first non-hex character.
func decodeHex(s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("hex is empty")
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return nil, fmt.Errorf("non-hex character at position %d of %d", i, len(s))
		}
	}
	if len(s)%2 != 0 {
		return nil, fmt.Errorf("hex has odd length %d (a byte is two hex characters)", len(s))
	}
	return hex.DecodeString(s)
}

// isHexDigit reports whether c is 0-9, a-f or A-F; hex.DecodeString would
// report the offending byte's value, which must not reach an error message.
func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// ParsePublicKeyDER validates and parses an RSA-4096 DER SPKI.
func ParsePublicKeyDER(der []byte) (*PublicKey, error) {
	if err := checkSPKI(der); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPublicKey, err)
	}
	parsed, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPublicKey, err)
	}
	key, ok := parsed.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: SPKI holds a %T, not an RSA key", ErrInvalidPublicKey, parsed)
	}
	if bits := key.N.BitLen(); bits != RSAKeyBits {
		return nil, fmt.Errorf("%w: RSA modulus is %d bits, want %d", ErrInvalidPublicKey, bits, RSAKeyBits)
	}
	if key.N.Bit(0) == 0 {
		return nil, fmt.Errorf("%w: RSA modulus is even", ErrInvalidPublicKey)
	}
	if key.E < 3 || key.E%2 == 0 {
		return nil, fmt.Errorf("%w: RSA public exponent %d is not an odd number >= 3", ErrInvalidPublicKey, key.E)
	}
	if len(der) != SPKIDERLen {
		return nil, fmt.Errorf("%w: RSA-4096 SPKI is %d bytes, want %d (unusual public exponent or encoding)",
			ErrInvalidPublicKey, len(der), SPKIDERLen)
	}
	return &PublicKey{RSA: key, DER: bytes.Clone(der)}, nil
}

// checkSPKI looks at the DER's structure before handing it to crypto/x509,
// so each classic mistake gets its own message: a byte dropped or added by a
// hex conversion, a PKCS#1 key, a key of another algorithm.
func checkSPKI(der []byte) error {
	if len(der) == 0 {
		return fmt.Errorf("DER is empty")
	}
	body, err := outerSequence(der)
	if err != nil {
		return err
	}
	// An SPKI starts with the AlgorithmIdentifier SEQUENCE; a PKCS#1
	// RSAPublicKey starts straight with the modulus INTEGER.
	if len(body) > 0 && body[0] == asn1TagInteger {
		return fmt.Errorf("DER is a PKCS#1 RSAPublicKey, not a SubjectPublicKeyInfo (SPKI, PEM \"PUBLIC KEY\")")
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	rest, err := asn1.Unmarshal(der, &spki)
	if err != nil {
		return fmt.Errorf("DER is not a SubjectPublicKeyInfo: %w", err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d trailing byte(s) after the SubjectPublicKeyInfo", len(rest))
	}
	if !spki.Algorithm.Algorithm.Equal(oidRSAEncryption) {
		oid := spki.Algorithm.Algorithm.String()
		if name, ok := knownAlgorithms[oid]; ok {
			return fmt.Errorf("key is %s (OID %s), not RSA", name, oid)
		}
		return fmt.Errorf("key algorithm OID %s is not RSA (%s)", oid, oidRSAEncryption)
	}
	return nil
}

// DER tags that tell an SPKI from a PKCS#1 key at a glance.
const (
	asn1TagSequence = 0x30
	asn1TagInteger  = 0x02
)

// outerSequence checks der is exactly one DER SEQUENCE and returns its
// contents. It compares the declared length with the bytes present, which
// is what turns an off-by-one hex conversion into a precise error.
func outerSequence(der []byte) ([]byte, error) {
	if der[0] != asn1TagSequence {
		return nil, fmt.Errorf("DER does not start with a SEQUENCE (is a byte missing or extra at the start?)")
	}
	if len(der) < 2 {
		return nil, fmt.Errorf("DER is truncated: %d byte(s), no length", len(der))
	}
	length, header := int(der[1]), 2
	switch {
	case der[1] == 0x80:
		return nil, fmt.Errorf("DER SEQUENCE has an indefinite length (BER, not DER)")
	case der[1] > 0x80:
		n := int(der[1] & 0x7f)
		if n > 3 {
			return nil, fmt.Errorf("DER SEQUENCE length field of %d bytes is implausibly large", n)
		}
		if len(der) < 2+n {
			return nil, fmt.Errorf("DER is truncated: %d byte(s), inside the length field", len(der))
		}
		length = 0
		for _, b := range der[2 : 2+n] {
			length = length<<8 | int(b)
		}
		header = 2 + n
	}
	switch total := header + length; {
	case len(der) < total:
		return nil, fmt.Errorf("DER is truncated: the SEQUENCE declares %d bytes, %d present (%d missing)",
			total, len(der), total-len(der))
	case len(der) > total:
		return nil, fmt.Errorf("%d extra trailing byte(s) after the %d-byte DER SEQUENCE", len(der)-total, total)
	}
	return der[header:], nil
}

// ParsePublicKeyPEM validates and parses one "PUBLIC KEY" PEM block (an
// "RSA PUBLIC KEY" PKCS#1 block is rejected with a message saying so).
func ParsePublicKeyPEM(pemBytes []byte) (*PublicKey, error) {
	trimmed := bytes.TrimLeft(pemBytes, " \t\r\n")
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return nil, fmt.Errorf("%w: no PEM block at the start (want -----BEGIN PUBLIC KEY-----)", ErrInvalidPublicKey)
	}
	block, rest := pem.Decode(trimmed)
	if block == nil {
		return nil, fmt.Errorf("%w: PEM armour is malformed (BEGIN/END lines or base64 body)", ErrInvalidPublicKey)
	}
	switch block.Type {
	case pemTypeSPKI:
	case pemTypePKCS1:
		return nil, fmt.Errorf("%w: PEM block is %q (PKCS#1); want %q (SubjectPublicKeyInfo)",
			ErrInvalidPublicKey, pemTypePKCS1, pemTypeSPKI)
	default:
		return nil, fmt.Errorf("%w: PEM block type is %q, want %q", ErrInvalidPublicKey, block.Type, pemTypeSPKI)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("%w: PEM block has headers; a public key has none", ErrInvalidPublicKey)
	}
	if n := len(bytes.TrimSpace(rest)); n != 0 {
		return nil, fmt.Errorf("%w: %d byte(s) of trailing data after the PEM block", ErrInvalidPublicKey, n)
	}
	return ParsePublicKeyDER(block.Bytes)
}

// PublicKeyFromPrivate is the validated PublicKey of priv.
func PublicKeyFromPrivate(priv *rsa.PrivateKey) (*PublicKey, error) {
	if priv == nil || priv.N == nil {
		return nil, fmt.Errorf("%w: no private key", ErrInvalidPublicKey)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPublicKey, err)
	}
	return ParsePublicKeyDER(der)
}

// Hex is the lowercase hex of k.DER.
func (k *PublicKey) Hex() string { return hex.EncodeToString(k.DER) }

// PEM is k.DER as a "PUBLIC KEY" block, base64 at 64 columns, ending "\n".
func (k *PublicKey) PEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: pemTypeSPKI, Bytes: k.DER}))
}

// Fingerprint is the lowercase hex SHA-256 of k.DER.
func (k *PublicKey) Fingerprint() string {
	sum := sha256.Sum256(k.DER)
	return hex.EncodeToString(sum[:])
}

// HexToPEM converts the upstream's hex public key to PEM, validating it.
func HexToPEM(s string) (string, error) {
	k, err := ParsePublicKeyHex(s)
	if err != nil {
		return "", err
	}
	return k.PEM(), nil
}
