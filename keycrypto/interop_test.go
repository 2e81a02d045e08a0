package keycrypto_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

// oaepArgs are openssl's pkeyutl options for OAEP with the given OAEP and
// MGF1 hashes.
func oaepArgs(oaepMD, mgf1MD string) []string {
	return []string{
		"-pkeyopt", "rsa_padding_mode:oaep",
		"-pkeyopt", "rsa_oaep_md:" + oaepMD,
		"-pkeyopt", "rsa_mgf1_md:" + mgf1MD,
	}
}

// TestOpensslDecryptsGoEncrypt: what we send upstream opens with openssl's
// OAEP-SHA256/MGF1-SHA256, and does NOT open if openssl assumes MGF1-SHA1:
// our MGF1 hash really is SHA-256.
func TestOpensslDecryptsGoEncrypt(t *testing.T) {
	priv := testkeys.RSA(1)
	keyFile := writePrivateKeyPEM(t, priv)
	pub, err := keycrypto.PublicKeyFromPrivate(priv)
	if err != nil {
		t.Fatal(err)
	}
	for _, plaintext := range [][]byte{
		[]byte("x"),
		[]byte("abandon ability able about above absent absorb abstract absurd abuse access accident"),
		bytes.Repeat([]byte{0xa5}, keycrypto.MaxPlaintextLen),
	} {
		ct, err := keycrypto.Encrypt(rand.Reader, pub, plaintext)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != keycrypto.CiphertextLen {
			t.Fatalf("ciphertext is %d bytes, want %d", len(ct), keycrypto.CiphertextLen)
		}
		args := append([]string{"pkeyutl", "-decrypt", "-inkey", keyFile}, oaepArgs("sha256", "sha256")...)
		got := mustOpenssl(t, ct, args...)
		if !bytes.Equal(got, plaintext) {
			t.Fatalf("openssl decrypted %d bytes that differ from the %d-byte plaintext", len(got), len(plaintext))
		}

		args = append([]string{"pkeyutl", "-decrypt", "-inkey", keyFile}, oaepArgs("sha256", "sha1")...)
		if out, err := openssl(t, ct, args...); err == nil && bytes.Equal(out, plaintext) {
			t.Fatal("openssl with MGF1-SHA1 decrypted our ciphertext: our MGF1 hash is not SHA-256")
		}
	}
}

// TestGoDecryptsOpensslEncrypt covers openssl → Go, and the classic
// mismatched-hash mistake: a block made with OAEP-SHA256 but MGF1-SHA1 (or
// OAEP-SHA1 throughout) must fail Decrypt, as the enclave would reject it.
func TestGoDecryptsOpensslEncrypt(t *testing.T) {
	priv := testkeys.RSA(2)
	pub, err := keycrypto.PublicKeyFromPrivate(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := writeTemp(t, "pub.pem", []byte(pub.PEM()))
	plaintext := []byte("seed: legal winner thank year wave sausage worth useful legal winner thank yellow")

	for _, tc := range []struct {
		name, oaepMD, mgf1MD string
		wantOK               bool
	}{
		{"sha256/mgf1-sha256", "sha256", "sha256", true},
		{"sha256/mgf1-sha1 (classic mistake)", "sha256", "sha1", false},
		{"sha1/mgf1-sha1", "sha1", "sha1", false},
		{"sha1/mgf1-sha256", "sha1", "sha256", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"pkeyutl", "-encrypt", "-pubin", "-inkey", pubFile}, oaepArgs(tc.oaepMD, tc.mgf1MD)...)
			ct := mustOpenssl(t, plaintext, args...)
			got, err := keycrypto.Decrypt(priv, ct)
			if tc.wantOK {
				if err != nil {
					t.Fatalf("Decrypt: %v", err)
				}
				if !bytes.Equal(got, plaintext) {
					t.Fatal("decrypted bytes differ from the plaintext")
				}
				return
			}
			if !errors.Is(err, keycrypto.ErrDecrypt) {
				t.Fatalf("Decrypt of a %s block: err = %v, want ErrDecrypt", tc.name, err)
			}
			if got != nil {
				t.Fatal("Decrypt returned bytes together with an error")
			}
		})
	}
}

// TestOpensslSignatureVerifies: openssl dgst -sha256 -sign gives the same
// signature format the enclave sends (ASN.1 DER, here base64'd), over the
// payload bytes and over the public key hex.
func TestOpensslSignatureVerifies(t *testing.T) {
	signer := testkeys.EC(0)
	keyFile := writePrivateKeyPEM(t, signer)
	pubPEM := mustOpenssl(t, nil, "pkey", "-in", keyFile, "-pubout")
	set, err := keycrypto.ParseVerificationKeysPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	v := loadRSAVector(t)
	for _, a := range []keycrypto.SignedAssignment{
		{PublicKeyHex: v.hex},
		{PublicKeyHex: v.hex, SignedPayload: `{"external_customer_id":"cust-<1>&","public_key":"` + v.hex + `"}`,
			SignedFields: []string{"external_customer_id"}},
	} {
		der := mustOpenssl(t, a.SignedBytes(), "dgst", "-sha256", "-sign", keyFile)
		a.Signature = base64.StdEncoding.EncodeToString(der)
		if err := keycrypto.VerifySignature(set.Keys, a); err != nil {
			t.Fatalf("openssl signature does not verify (payload %t): %v", a.SignedPayload != "", err)
		}
		a.PublicKeyHex = strings.ToUpper(a.PublicKeyHex)
		if a.SignedPayload == "" {
			if err := keycrypto.VerifySignature(set.Keys, a); !errors.Is(err, keycrypto.ErrSignatureInvalid) {
				t.Fatalf("signature over lowercase hex verified over uppercase hex: %v", err)
			}
		}
	}
}

// TestGoSignatureVerifiesWithOpenssl: what the sandbox signs, openssl
// accepts as ES256 (DER) with the PEM we would publish.
func TestGoSignatureVerifiesWithOpenssl(t *testing.T) {
	signer := testkeys.EC(1)
	keyFile := writePrivateKeyPEM(t, signer)
	pubFile := writeTemp(t, "pub.pem", mustOpenssl(t, nil, "pkey", "-in", keyFile, "-pubout"))
	msg := []byte(`{"key_id":"7c1a","public_key":"3082"}`)
	sig, err := keycrypto.SignES256(rand.Reader, signer, msg)
	if err != nil {
		t.Fatal(err)
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		t.Fatalf("signature is not standard base64: %v", err)
	}
	sigFile := writeTemp(t, "sig.der", der)
	out := mustOpenssl(t, msg, "dgst", "-sha256", "-verify", pubFile, "-signature", sigFile)
	if !bytes.Contains(out, []byte("Verified OK")) {
		t.Fatalf("openssl: %s", out)
	}
	if out, err := openssl(t, append(msg, ' '), "dgst", "-sha256", "-verify", pubFile, "-signature", sigFile); err == nil {
		t.Fatalf("openssl verified the signature over other bytes: %s", out)
	}
}
