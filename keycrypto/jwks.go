package keycrypto

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"time"
)

// JWKS member names and the values an assignment-signing key must have.
const (
	jwkKty       = "EC"
	jwkCrv       = "P-256"
	jwkAlg       = "ES256"
	jwkUse       = "sig"
	jwkPurposes  = "coincover:purposes"
	jwkValidFrom = "coincover:validFrom"
	// p256CoordLen is the size of a P-256 coordinate, big-endian, padded.
	p256CoordLen = 32
)

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
//
// Member names are matched exactly (encoding/json's case-insensitive struct
// matching would let "KTY" pass for "kty"). An entry carrying private key
// material ("d") is refused outright: a published key set must never hold it.
func ParseJWKS(data []byte) (*KeySet, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %w", ErrInvalidJWKS, err)
	}
	rawKeys, ok := doc["keys"]
	if !ok {
		return nil, fmt.Errorf("%w: no \"keys\" member", ErrInvalidJWKS)
	}
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(rawKeys, &entries); err != nil || entries == nil {
		return nil, fmt.Errorf("%w: \"keys\" is not an array of objects", ErrInvalidJWKS)
	}
	set := &KeySet{}
	for i, e := range entries {
		key, use, err := parseJWK(e)
		if err != nil {
			return nil, fmt.Errorf("%w: keys[%d]: %w", ErrInvalidJWKS, i, err)
		}
		if use {
			set.Keys = append(set.Keys, key)
		}
	}
	return set, nil
}

// parseJWK reads one JWKS entry; use is false for an entry that is well
// formed but not an ES256 signing key (skipped, per the contract).
func parseJWK(e map[string]json.RawMessage) (key VerificationKey, use bool, err error) {
	if e == nil {
		return key, false, fmt.Errorf("entry is not an object")
	}
	if _, ok := e["d"]; ok {
		return key, false, fmt.Errorf("entry holds a private key (\"d\"); refusing the whole set")
	}
	var kty, crv, alg, u string
	for _, m := range []struct {
		name string
		dst  *string
	}{{"kty", &kty}, {"crv", &crv}, {"alg", &alg}, {"use", &u}, {"kid", &key.KID}} {
		if err := optionalString(e, m.name, m.dst); err != nil {
			return key, false, err
		}
	}
	if kty != jwkKty || crv != jwkCrv || alg != jwkAlg || u != jwkUse {
		return key, false, nil
	}
	if key.Key, err = jwkPoint(e); err != nil {
		return key, false, fmt.Errorf("kid %q: %w", key.KID, err)
	}
	if raw, ok := e[jwkPurposes]; ok {
		if err := json.Unmarshal(raw, &key.Purposes); err != nil {
			return key, false, fmt.Errorf("kid %q: %s is not an array of strings", key.KID, jwkPurposes)
		}
	}
	var validFrom string
	if err := optionalString(e, jwkValidFrom, &validFrom); err != nil {
		return key, false, fmt.Errorf("kid %q: %w", key.KID, err)
	}
	if validFrom != "" {
		if key.ValidFrom, err = time.Parse(time.RFC3339, validFrom); err != nil {
			return key, false, fmt.Errorf("kid %q: %s is not an RFC 3339 time", key.KID, jwkValidFrom)
		}
		if !inRFC3339Range(key.ValidFrom) {
			return key, false, fmt.Errorf("kid %q: %s is outside years 0000-9999 in UTC", key.KID, jwkValidFrom)
		}
	}
	return key, true, nil
}

// optionalString decodes member name of e into dst when present; a present
// member that is not a string is an error.
func optionalString(e map[string]json.RawMessage, name string, dst *string) error {
	raw, ok := e[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return fmt.Errorf("%q is not a string", name)
	}
	return nil
}

// jwkPoint decodes x and y (unpadded base64url, 32 bytes each) and checks
// the point is on P-256.
func jwkPoint(e map[string]json.RawMessage) (*ecdsa.PublicKey, error) {
	point := []byte{0x04} // SEC 1 uncompressed
	for _, name := range []string{"x", "y"} {
		var s string
		if err := optionalString(e, name, &s); err != nil {
			return nil, err
		}
		if s == "" {
			return nil, fmt.Errorf("%q is missing", name)
		}
		b, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not unpadded base64url", name)
		}
		if len(b) != p256CoordLen {
			return nil, fmt.Errorf("%q is %d bytes, want %d", name, len(b), p256CoordLen)
		}
		point = append(point, b...)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("point (x, y) is not on P-256")
	}
	return pub, nil
}

// ParseVerificationKeysPEM parses one or more "PUBLIC KEY" PEM blocks holding
// P-256 keys (air-gapped deployments); each gets PurposeAssignmentSig.
func ParseVerificationKeysPEM(data []byte) (*KeySet, error) {
	set := &KeySet{}
	rest := bytes.TrimSpace(data)
	for n := 0; len(rest) > 0; n++ {
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, fmt.Errorf("%w: block %d: data that is not a PEM block", ErrInvalidJWKS, n)
		}
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%w: block %d: malformed PEM armour", ErrInvalidJWKS, n)
		}
		rest = bytes.TrimSpace(rest)
		if block.Type != pemTypeSPKI {
			return nil, fmt.Errorf("%w: block %d: PEM type %q, want %q", ErrInvalidJWKS, n, block.Type, pemTypeSPKI)
		}
		parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: block %d: %w", ErrInvalidJWKS, n, err)
		}
		pub, ok := parsed.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: block %d: not a P-256 ECDSA key", ErrInvalidJWKS, n)
		}
		set.Keys = append(set.Keys, VerificationKey{Key: pub, Purposes: []string{PurposeAssignmentSig}})
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("%w: no PEM block", ErrInvalidJWKS)
	}
	return set, nil
}

// Eligible returns the keys usable at now: purpose assignment-sig present and
// ValidFrom not after now.
func (s *KeySet) Eligible(now time.Time) []VerificationKey {
	if s == nil {
		return nil
	}
	var out []VerificationKey
	for _, k := range s.Keys {
		if k.Key == nil || !slices.Contains(k.Purposes, PurposeAssignmentSig) {
			continue
		}
		if !k.ValidFrom.IsZero() && k.ValidFrom.After(now) {
			continue
		}
		out = append(out, k)
	}
	return out
}

// JWK is a signing key to publish.
type JWK struct {
	KID       string
	Key       *ecdsa.PublicKey
	Purposes  []string
	ValidFrom time.Time
}

// jwkJSON is the wire form of one published entry, members in the order the
// provider's documentation shows them.
type jwkJSON struct {
	Kty       string   `json:"kty"`
	Crv       string   `json:"crv"`
	Alg       string   `json:"alg"`
	Use       string   `json:"use"`
	KID       string   `json:"kid"`
	X         string   `json:"x"`
	Y         string   `json:"y"`
	Purposes  []string `json:"coincover:purposes"`
	ValidFrom string   `json:"coincover:validFrom,omitempty"`
}

// MarshalJWKS publishes keys in the contract's JWKS format (kty EC, crv
// P-256, alg ES256, use sig, kid, x, y, coincover:purposes,
// coincover:validFrom as RFC 3339).
//
// A zero ValidFrom is omitted (always valid); others are written in UTC with
// as many fractional digits as they need, so parsing gives the same instant.
func MarshalJWKS(keys []JWK) ([]byte, error) {
	doc := struct {
		Keys []jwkJSON `json:"keys"`
	}{Keys: []jwkJSON{}}
	for i, k := range keys {
		if k.KID == "" {
			return nil, fmt.Errorf("%w: keys[%d] has no kid", ErrInvalidJWKS, i)
		}
		if k.Key == nil || k.Key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: keys[%d] (kid %q) is not a P-256 key", ErrInvalidJWKS, i, k.KID)
		}
		point, err := k.Key.Bytes()
		if err != nil || len(point) != 1+2*p256CoordLen {
			return nil, fmt.Errorf("%w: keys[%d] (kid %q) is not a valid P-256 point", ErrInvalidJWKS, i, k.KID)
		}
		entry := jwkJSON{
			Kty: jwkKty, Crv: jwkCrv, Alg: jwkAlg, Use: jwkUse, KID: k.KID,
			X:        base64.RawURLEncoding.EncodeToString(point[1 : 1+p256CoordLen]),
			Y:        base64.RawURLEncoding.EncodeToString(point[1+p256CoordLen:]),
			Purposes: append([]string{}, k.Purposes...),
		}
		if !k.ValidFrom.IsZero() {
			if !inRFC3339Range(k.ValidFrom) {
				return nil, fmt.Errorf("%w: keys[%d] (kid %q) validFrom is outside years 0000-9999 in UTC", ErrInvalidJWKS, i, k.KID)
			}
			entry.ValidFrom = k.ValidFrom.UTC().Format(time.RFC3339Nano)
		}
		doc.Keys = append(doc.Keys, entry)
	}
	return json.MarshalIndent(doc, "", "  ")
}

// inRFC3339Range reports whether t, written in UTC, has the four-digit year
// RFC 3339 requires; an offset can push a parsed time just outside it, and
// then it could not be published again.
func inRFC3339Range(t time.Time) bool {
	y := t.UTC().Year()
	return 0 <= y && y <= 9999
}
