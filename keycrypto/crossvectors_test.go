package keycrypto_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

// crossVectors is testdata/vectors.json as any caller reads it: decoded
// here independently of the generator, as the interop clients do.
type crossVectors struct {
	Keys []struct {
		Name              string `json:"name"`
		PublicKeyHex      string `json:"public_key_hex"`
		PublicKeyPEM      string `json:"public_key_pem"`
		FingerprintSHA256 string `json:"fingerprint_sha256"`
		PrivateKeyPEM     string `json:"private_key_pem"`
	} `json:"keys"`
	Checksums []struct {
		PlaintextHex   string `json:"plaintext_hex"`
		ChecksumSHA256 string `json:"checksum_sha256"`
	} `json:"checksums"`
	Ciphertexts []struct {
		Key           string `json:"key"`
		OAEPHash      string `json:"oaep_hash"`
		MGF1Hash      string `json:"mgf1_hash"`
		PlaintextHex  string `json:"plaintext_hex"`
		CiphertextHex string `json:"ciphertext_hex"`
		Valid         bool   `json:"valid"`
	} `json:"ciphertexts"`
}

func loadCrossVectors(t *testing.T) crossVectors {
	t.Helper()
	var v crossVectors
	if err := json.Unmarshal([]byte(readTestdata(t, "vectors.json")), &v); err != nil {
		t.Fatalf("testdata/vectors.json: %v", err)
	}
	// A file that lost its mistake or its keys would make every check
	// below pass vacuously.
	valid, mistakes := 0, 0
	for _, c := range v.Ciphertexts {
		if c.Valid {
			valid++
		} else {
			mistakes++
		}
	}
	if len(v.Keys) < 2 || len(v.Checksums) == 0 || valid < len(v.Keys) || mistakes != 1 {
		t.Fatalf("vectors.json has %d keys, %d checksums, %d valid and %d mistaken ciphertexts; run go generate ./keycrypto",
			len(v.Keys), len(v.Checksums), valid, mistakes)
	}
	return v
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("vector hex: %v", err)
	}
	return b
}

// TestCrossVectorsKeys: the vectors' keys are the test pool's, and
// keycrypto derives exactly their PEM and fingerprint from their hex.
func TestCrossVectorsKeys(t *testing.T) {
	for i, k := range loadCrossVectors(t).Keys {
		t.Run(k.Name, func(t *testing.T) {
			if want := fmt.Sprintf("rsa4096-%02d", i); k.Name != want {
				t.Fatalf("key %d is named %q, want %q (the pool index)", i, k.Name, want)
			}
			pemFromHex, err := keycrypto.HexToPEM(k.PublicKeyHex)
			if err != nil {
				t.Fatalf("HexToPEM: %v", err)
			}
			if pemFromHex != k.PublicKeyPEM {
				t.Errorf("HexToPEM differs from the vector's PEM:\n%s\nwant\n%s", pemFromHex, k.PublicKeyPEM)
			}
			pub, err := keycrypto.ParsePublicKeyPEM([]byte(k.PublicKeyPEM))
			if err != nil {
				t.Fatalf("ParsePublicKeyPEM: %v", err)
			}
			if pub.Hex() != k.PublicKeyHex || pub.Fingerprint() != k.FingerprintSHA256 {
				t.Errorf("PEM → hex %q…, fingerprint %q; want %q…, %q", pub.Hex()[:40], pub.Fingerprint(), k.PublicKeyHex[:40], k.FingerprintSHA256)
			}
			priv := parseVectorPrivateKey(t, k.PrivateKeyPEM)
			if !priv.Equal(testkeys.RSA(i)) {
				t.Errorf("private key %s is not testkeys.RSA(%d)", k.Name, i)
			}
		})
	}
}

func TestCrossVectorsChecksums(t *testing.T) {
	for _, c := range loadCrossVectors(t).Checksums {
		if got := keycrypto.Checksum(mustHex(t, c.PlaintextHex)); got != c.ChecksumSHA256 {
			t.Errorf("Checksum(%.16s…) = %s, want %s", c.PlaintextHex, got, c.ChecksumSHA256)
		}
	}
}

// TestCrossVectorsCiphertexts: keycrypto.Decrypt opens every valid block to
// its plaintext and refuses the MGF1-SHA1 mistake, which really is an
// MGF1-SHA1 block (it opens with those hashes), not just a corrupt one.
func TestCrossVectorsCiphertexts(t *testing.T) {
	v := loadCrossVectors(t)
	privs := map[string]*rsa.PrivateKey{}
	for _, k := range v.Keys {
		privs[k.Name] = parseVectorPrivateKey(t, k.PrivateKeyPEM)
	}
	for _, c := range v.Ciphertexts {
		t.Run(fmt.Sprintf("%s/%s-%s", c.Key, c.OAEPHash, c.MGF1Hash), func(t *testing.T) {
			priv := privs[c.Key]
			if priv == nil {
				t.Fatalf("ciphertext names unknown key %q", c.Key)
			}
			ct, want := mustHex(t, c.CiphertextHex), mustHex(t, c.PlaintextHex)
			got, err := keycrypto.Decrypt(priv, ct)
			if c.Valid {
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("Decrypt = %x, %v; want the vector's plaintext", got, err)
				}
				return
			}
			if !errors.Is(err, keycrypto.ErrDecrypt) {
				t.Fatalf("Decrypt of the %s mistake = %v, want ErrDecrypt", c.MGF1Hash, err)
			}
			hashes := map[string]crypto.Hash{"SHA-1": crypto.SHA1, "SHA-256": crypto.SHA256}
			opts := &rsa.OAEPOptions{Hash: hashes[c.OAEPHash], MGFHash: hashes[c.MGF1Hash]}
			if got, err := priv.Decrypt(nil, ct, opts); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("the mistake does not open with its declared hashes: %v", err)
			}
		})
	}
}

// TestOpensslCrossVectors: openssl, knowing nothing of Go, agrees with the
// vectors: the PEM's DER is the hex, and the private keys open the valid
// blocks with OAEP-SHA256/MGF1-SHA256 but not the mistake.
func TestOpensslCrossVectors(t *testing.T) {
	v := loadCrossVectors(t)
	dir := t.TempDir()
	keyFiles := map[string]string{}
	for _, k := range v.Keys {
		der := mustOpenssl(t, []byte(k.PublicKeyPEM), "pkey", "-pubin", "-outform", "DER")
		if hex.EncodeToString(der) != k.PublicKeyHex {
			t.Errorf("%s: openssl's DER of the PEM differs from public_key_hex", k.Name)
		}
		keyFiles[k.Name] = filepath.Join(dir, k.Name+".pem")
		if err := os.WriteFile(keyFiles[k.Name], []byte(k.PrivateKeyPEM), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range v.Ciphertexts {
		args := append([]string{"pkeyutl", "-decrypt", "-inkey", keyFiles[c.Key]}, oaepArgs("sha256", "sha256")...)
		got, err := openssl(t, mustHex(t, c.CiphertextHex), args...)
		switch {
		case c.Valid && (err != nil || !bytes.Equal(got, mustHex(t, c.PlaintextHex))):
			t.Errorf("%s: openssl OAEP-SHA256/MGF1-SHA256 did not open a valid vector: %v", c.Key, err)
		case !c.Valid && err == nil:
			t.Errorf("%s: openssl opened the %s mistake with MGF1-SHA256", c.Key, c.MGF1Hash)
		}
	}
}

func parseVectorPrivateKey(t *testing.T, s string) *rsa.PrivateKey {
	t.Helper()
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatal("private_key_pem is not a PKCS#8 PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	priv, ok := key.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("private_key_pem holds a %T", key)
	}
	return priv
}
