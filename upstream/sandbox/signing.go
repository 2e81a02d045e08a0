package sandbox

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
)

// defaultPurposes are published for a key whose Purposes is nil; they match
// the upstream's example document (a verifier must look for assignment-sig,
// not expect it alone).
var defaultPurposes = []string{keycrypto.PurposeAssignmentSig, "policy-sig"}

// signingKeyBackdate backdates a generated key's validFrom so a client
// whose clock runs a little behind still accepts it.
const signingKeyBackdate = time.Hour

// signingKeys is the emulator's enclave signing identity: the keys it
// publishes and the one that signs.
type signingKeys struct {
	all    []SigningKey
	active SigningKey
	// rogue signs in MisbehaveBadSignature mode; the JWKS never has it.
	rogue *ecdsa.PrivateKey
}

// persistedSigningKeys is DataDir/signing-keys.json.
type persistedSigningKeys struct {
	Keys []persistedSigningKey `json:"keys"`
}

type persistedSigningKey struct {
	KID           string    `json:"kid"`
	PrivateKeyPEM string    `json:"private_key_pem"`
	Purposes      []string  `json:"purposes"`
	ValidFrom     time.Time `json:"valid_from"`
	Retired       bool      `json:"retired,omitempty"`
	Active        bool      `json:"active,omitempty"`
}

// newSigningKeys uses the configured keys, or the persisted ones, or makes
// (and persists) the default key.
func newSigningKeys(configured []SigningKey, dataDir string, now time.Time) (*signingKeys, error) {
	keys := slices.Clone(configured)
	if len(keys) == 0 {
		var err error
		keys, err = loadOrCreateSigningKeys(dataDir, now)
		if err != nil {
			return nil, err
		}
	}
	for i := range keys {
		if keys[i].Purposes == nil {
			keys[i].Purposes = slices.Clone(defaultPurposes)
		}
	}
	active, err := pickActive(keys)
	if err != nil {
		return nil, err
	}
	rogue, err := keycrypto.GenerateSigningKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sandbox: generating the misbehaviour signing key: %w", err)
	}
	return &signingKeys{all: keys, active: active, rogue: rogue}, nil
}

// pickActive validates keys and returns the signer: the one marked Active,
// else the first published one.
func pickActive(keys []SigningKey) (SigningKey, error) {
	kids := map[string]bool{}
	var active []SigningKey
	var firstPublished *SigningKey
	for i, k := range keys {
		if k.KID == "" {
			return SigningKey{}, fmt.Errorf("sandbox: signing key #%d has no kid", i+1)
		}
		if kids[k.KID] {
			return SigningKey{}, fmt.Errorf("sandbox: signing kid %q appears twice", k.KID)
		}
		kids[k.KID] = true
		if k.Private == nil || k.Private.Curve != elliptic.P256() {
			return SigningKey{}, fmt.Errorf("sandbox: signing key %q is not a P-256 private key", k.KID)
		}
		if k.Active {
			if k.Retired {
				return SigningKey{}, fmt.Errorf("sandbox: signing key %q is both retired and active", k.KID)
			}
			active = append(active, k)
		}
		if !k.Retired && firstPublished == nil {
			firstPublished = &keys[i]
		}
	}
	switch {
	case len(active) > 1:
		return SigningKey{}, errors.New("sandbox: more than one signing key is marked active")
	case len(active) == 1:
		return active[0], nil
	case firstPublished != nil:
		return *firstPublished, nil
	default:
		return SigningKey{}, errors.New("sandbox: every signing key is retired; one must be published to sign")
	}
}

func loadOrCreateSigningKeys(dataDir string, now time.Time) ([]SigningKey, error) {
	path := ""
	if dataDir != "" {
		path = filepath.Join(dataDir, signingFileName)
		data, err := os.ReadFile(path) //nolint:gosec // G304: a fixed file name under the configured DataDir
		switch {
		case err == nil:
			return parsePersistedSigningKeys(path, data)
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("sandbox: reading signing keys: %w", err)
		}
	}
	priv, err := keycrypto.GenerateSigningKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sandbox: generating the signing key: %w", err)
	}
	keys := []SigningKey{{
		KID:       DefaultSigningKID,
		Private:   priv,
		Purposes:  slices.Clone(defaultPurposes),
		ValidFrom: now.UTC().Truncate(time.Second).Add(-signingKeyBackdate),
		Active:    true,
	}}
	if path != "" {
		if err := saveSigningKeys(path, keys); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

func parsePersistedSigningKeys(path string, data []byte) ([]SigningKey, error) {
	var p persistedSigningKeys
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("sandbox: %s is corrupt: %w", path, err)
	}
	keys := make([]SigningKey, 0, len(p.Keys))
	for _, pk := range p.Keys {
		block, _ := pem.Decode([]byte(pk.PrivateKeyPEM))
		if block == nil || block.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("sandbox: %s: key %q is not a PKCS#8 PEM block", path, pk.KID)
		}
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("sandbox: %s: key %q: %w", path, pk.KID, err)
		}
		priv, ok := parsed.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("sandbox: %s: key %q is %T, not ECDSA", path, pk.KID, parsed)
		}
		keys = append(keys, SigningKey{KID: pk.KID, Private: priv, Purposes: pk.Purposes,
			ValidFrom: pk.ValidFrom, Retired: pk.Retired, Active: pk.Active})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("sandbox: %s lists no signing keys", path)
	}
	return keys, nil
}

func saveSigningKeys(path string, keys []SigningKey) error {
	var p persistedSigningKeys
	for _, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.Private)
		if err != nil {
			return fmt.Errorf("sandbox: encoding signing key %q: %w", k.KID, err)
		}
		p.Keys = append(p.Keys, persistedSigningKey{
			KID:           k.KID,
			PrivateKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
			Purposes:      k.Purposes,
			ValidFrom:     k.ValidFrom,
			Retired:       k.Retired,
			Active:        k.Active,
		})
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, data); err != nil {
		return fmt.Errorf("sandbox: persisting signing keys: %w", err)
	}
	return nil
}

// published are the keys the JWKS lists (not retired), in configuration order.
func (s *signingKeys) published() []SigningKey {
	var out []SigningKey
	for _, k := range s.all {
		if !k.Retired {
			out = append(out, k)
		}
	}
	return out
}

// jwks is the JWKS document of the published keys.
func (s *signingKeys) jwks() ([]byte, error) {
	var keys []keycrypto.JWK
	for _, k := range s.published() {
		keys = append(keys, keycrypto.JWK{KID: k.KID, Key: &k.Private.PublicKey,
			Purposes: slices.Clone(k.Purposes), ValidFrom: k.ValidFrom})
	}
	return keycrypto.MarshalJWKS(keys)
}

// keySet is the published keys as keycrypto verification keys.
func (s *signingKeys) keySet() *keycrypto.KeySet {
	set := &keycrypto.KeySet{}
	for _, k := range s.published() {
		pub := k.Private.PublicKey
		set.Keys = append(set.Keys, keycrypto.VerificationKey{KID: k.KID, Key: &pub,
			Purposes: slices.Clone(k.Purposes), ValidFrom: k.ValidFrom})
	}
	return set
}

// sign signs msg with the active key, or the rogue key when misbehaving.
func (s *signingKeys) sign(msg []byte, badSignature bool) (string, error) {
	priv := s.active.Private
	if badSignature {
		priv = s.rogue
	}
	return keycrypto.SignES256(rand.Reader, priv, msg)
}
