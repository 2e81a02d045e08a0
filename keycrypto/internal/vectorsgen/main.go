// Command vectorsgen writes keycrypto/testdata/vectors.json, the
// cross-language test vectors every caller's implementation (Go, openssl,
// the Node, Python and Java interop clients) checks itself against: for a
// few keys of the committed test pool, the upstream's hex SPKI, its PEM and
// fingerprint; plaintext checksums; RSA-OAEP ciphertexts with the private
// keys that open them (test keys only, never a real one); and one ciphertext
// made with the classic mistake, MGF1-SHA1, that a correct decryptor refuses.
//
// Run it through `go generate ./keycrypto`. OAEP is randomised, so to keep
// the file stable a ciphertext already in the file is kept when it still
// opens, with its declared hashes, to its declared plaintext under its key;
// only missing or broken ones are made afresh.
package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"strings"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

// Vectors is the file's format. Binary values are lowercase hex so that
// every language reads them with its standard library.
type Vectors struct {
	Comment     string       `json:"comment"`
	Keys        []Key        `json:"keys"`
	Checksums   []Checksum   `json:"checksums"`
	Ciphertexts []Ciphertext `json:"ciphertexts"`
}

// Key is one test-pool key as the upstream returns it (hex SPKI) and as a
// caller must derive it (PEM, fingerprint), with its private key so a
// client can open the ciphertexts.
type Key struct {
	Name              string `json:"name"`
	PublicKeyHex      string `json:"public_key_hex"`
	PublicKeyPEM      string `json:"public_key_pem"`
	FingerprintSHA256 string `json:"fingerprint_sha256"`
	PrivateKeyPEM     string `json:"private_key_pem"`
}

// Checksum is the checksum a SecureData caller sends: SHA-256 of the
// plaintext, lowercase hex.
type Checksum struct {
	PlaintextHex   string `json:"plaintext_hex"`
	ChecksumSHA256 string `json:"checksum_sha256"`
}

// Ciphertext is one RSA-OAEP block (empty label). Valid is false for the
// deliberate mistake: the service and the upstream must refuse it.
type Ciphertext struct {
	Key           string `json:"key"`
	OAEPHash      string `json:"oaep_hash"`
	MGF1Hash      string `json:"mgf1_hash"`
	PlaintextHex  string `json:"plaintext_hex"`
	CiphertextHex string `json:"ciphertext_hex"`
	Valid         bool   `json:"valid"`
	Note          string `json:"note,omitempty"`
}

const comment = "Cross-language test vectors for RecoveryService callers, written by " +
	"`go generate ./keycrypto` (keycrypto/internal/vectorsgen) from the committed TEST key pool " +
	"(keycrypto/testkeys): never use these keys for anything real. RSA-4096, OAEP with an empty label; " +
	"binary values are lowercase hex; the fingerprint is SHA-256 of the DER SPKI; a checksum is SHA-256 of the plaintext."

// poolKeys are the test-pool indexes the vectors use.
var poolKeys = []int{0, 1, 2}

// plaintexts cover the edges: one byte, a typical seed phrase, and exactly
// the largest block (keycrypto.MaxPlaintextLen bytes).
var plaintexts = [][]byte{
	[]byte("x"),
	[]byte("abandon ability able about above absent absorb abstract absurd abuse access accident"),
	bytes.Repeat([]byte{0xa5}, keycrypto.MaxPlaintextLen),
}

func main() {
	out := flag.String("out", "testdata/vectors.json", "file to write")
	flag.Parse()
	if err := run(*out); err != nil {
		log.Fatal(err)
	}
}

func run(out string) error {
	previous, err := readPrevious(out)
	if err != nil {
		return err
	}
	v := Vectors{Comment: comment}
	privs := map[string]*rsa.PrivateKey{}
	for _, i := range poolKeys {
		priv := testkeys.RSA(i)
		pub, err := keycrypto.PublicKeyFromPrivate(priv)
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("rsa4096-%02d", i)
		privs[name] = priv
		v.Keys = append(v.Keys, Key{
			Name:              name,
			PublicKeyHex:      pub.Hex(),
			PublicKeyPEM:      pub.PEM(),
			FingerprintSHA256: pub.Fingerprint(),
			PrivateKeyPEM:     string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		})
	}
	for _, p := range plaintexts {
		v.Checksums = append(v.Checksums, Checksum{PlaintextHex: hex.EncodeToString(p), ChecksumSHA256: keycrypto.Checksum(p)})
	}
	for i, k := range v.Keys {
		// Each key seals a different plaintext so that no client can pass
		// by pairing the wrong key with the wrong block.
		p := plaintexts[i%len(plaintexts)]
		c, err := ciphertext(previous, privs[k.Name], Ciphertext{Key: k.Name, OAEPHash: "SHA-256", MGF1Hash: "SHA-256",
			PlaintextHex: hex.EncodeToString(p), Valid: true})
		if err != nil {
			return err
		}
		v.Ciphertexts = append(v.Ciphertexts, c)
	}
	mistake, err := ciphertext(previous, privs[v.Keys[0].Name], Ciphertext{Key: v.Keys[0].Name, OAEPHash: "SHA-256", MGF1Hash: "SHA-1",
		PlaintextHex: hex.EncodeToString(plaintexts[1]), Valid: false,
		Note: "the classic mistake: OAEP-SHA256 with an MGF1-SHA1 mask (Java's RSA/ECB/OAEPWithSHA-256AndMGF1Padding default); " +
			"it must NOT open with MGF1-SHA256, and RecoveryService refuses it"})
	if err != nil {
		return err
	}
	v.Ciphertexts = append(v.Ciphertexts, mistake)

	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(data, '\n'), 0o644)
}

// readPrevious returns the ciphertexts of the file being replaced, if any.
func readPrevious(path string) ([]Ciphertext, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var v Vectors
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w (delete it to start afresh)", path, err)
	}
	return v.Ciphertexts, nil
}

// ciphertext fills want.CiphertextHex: from previous when a block there has
// the same key, hashes and plaintext and still opens to it, else afresh.
func ciphertext(previous []Ciphertext, priv *rsa.PrivateKey, want Ciphertext) (Ciphertext, error) {
	opts := &rsa.OAEPOptions{Hash: hashByName(want.OAEPHash), MGFHash: hashByName(want.MGF1Hash)}
	for _, p := range previous {
		if p.Key != want.Key || p.OAEPHash != want.OAEPHash || p.MGF1Hash != want.MGF1Hash || p.PlaintextHex != want.PlaintextHex {
			continue
		}
		ct, err := hex.DecodeString(p.CiphertextHex)
		if err != nil {
			continue
		}
		if got, err := priv.Decrypt(nil, ct, opts); err == nil && hex.EncodeToString(got) == want.PlaintextHex {
			want.CiphertextHex = p.CiphertextHex
			return want, nil
		}
	}
	plaintext, err := hex.DecodeString(want.PlaintextHex)
	if err != nil {
		return want, err
	}
	ct, err := rsa.EncryptOAEPWithOptions(rand.Reader, &priv.PublicKey, plaintext, opts)
	if err != nil {
		return want, err
	}
	want.CiphertextHex = hex.EncodeToString(ct)
	return want, nil
}

func hashByName(name string) crypto.Hash {
	switch strings.ToUpper(name) {
	case "SHA-1":
		return crypto.SHA1
	case "SHA-256":
		return crypto.SHA256
	}
	panic("vectorsgen: unknown hash " + name) // a typo in this file
}
