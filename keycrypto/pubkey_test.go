package keycrypto_test

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

// spkiHex marshals any public key as hex SPKI, for building wrong inputs.
func spkiHex(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(der)
}

// fakeRSA builds an RSA public key with the given modulus and exponent; it
// need not be a real key, only well-formed DER, so no key is generated.
func fakeRSA(n *big.Int, e int) *rsa.PublicKey { return &rsa.PublicKey{N: n, E: e} }

func TestParsePublicKeyHexRejects(t *testing.T) {
	v := loadRSAVector(t)
	n := testkeys.RSA(0).N
	even := new(big.Int).SetBit(n, 0, 0)
	rsa2048 := new(big.Int).SetBit(new(big.Int).Rsh(n, 2048), 0, 1)
	rsa8192 := new(big.Int).Mul(n, testkeys.RSA(1).N)
	rsaPSS := strings.Replace(v.hex, "06092a864886f70d010101", "06092a864886f70d01010a", 1)
	ed := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public()

	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "hex is empty"},
		{"odd length", v.hex[:len(v.hex)-1], "odd length 1099"},
		{"non-hex character", v.hex[:10] + "Q" + v.hex[11:], "non-hex character at position 10"},
		{"whitespace", v.hex[:20] + " " + v.hex[21:], "non-hex character at position 20"},
		{"0x prefix", "0x" + v.hex, "non-hex character at position 1"},
		{"truncated by one byte", v.hex[:len(v.hex)-2], "truncated: the SEQUENCE declares 550 bytes, 549 present (1 missing)"},
		{"truncated to the header", v.hex[:6], "truncated"},
		{"one extra trailing byte", v.hex + "00", "1 extra trailing byte(s)"},
		{"three extra trailing bytes", v.hex + "0a0b0c", "3 extra trailing byte(s)"},
		{"first byte dropped (shifted)", v.hex[2:], "does not start with a SEQUENCE"},
		{"byte prepended (shifted)", "00" + v.hex, "does not start with a SEQUENCE"},
		{"PKCS#1 RSAPublicKey", hex.EncodeToString(x509.MarshalPKCS1PublicKey(&testkeys.RSA(0).PublicKey)), "PKCS#1 RSAPublicKey, not a SubjectPublicKeyInfo"},
		{"EC key", spkiHex(t, &testkeys.EC(0).PublicKey), "key is EC (OID 1.2.840.10045.2.1), not RSA"},
		{"Ed25519 key", spkiHex(t, ed), "key is Ed25519"},
		{"RSASSA-PSS key", rsaPSS, "key is RSASSA-PSS"},
		{"RSA-2048", spkiHex(t, fakeRSA(rsa2048, 65537)), "RSA modulus is 2048 bits, want 4096"},
		{"RSA-8192", spkiHex(t, fakeRSA(rsa8192, 65537)), "bits, want 4096"},
		{"even modulus", spkiHex(t, fakeRSA(even, 65537)), "modulus is even"},
		{"even exponent", spkiHex(t, fakeRSA(n, 65536)), "exponent 65536 is not an odd number"},
		{"exponent 3 (not the 550-byte encoding)", spkiHex(t, fakeRSA(n, 3)), "548 bytes, want 550"},
		{"indefinite length", "3080" + v.hex[8:], "indefinite length"},
		{"not DER at all", hex.EncodeToString([]byte("-----BEGIN PUBLIC KEY-----")), "does not start with a SEQUENCE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := keycrypto.ParsePublicKeyHex(tc.in)
			if !errors.Is(err, keycrypto.ErrInvalidPublicKey) {
				t.Fatalf("err = %v, want ErrInvalidPublicKey", err)
			}
			if k != nil {
				t.Fatal("returned a key together with an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if _, err := keycrypto.HexToPEM(tc.in); !errors.Is(err, keycrypto.ErrInvalidPublicKey) {
				t.Fatalf("HexToPEM accepted it: %v", err)
			}
		})
	}
}

// TestNonHexErrorHidesTheCharacter: a pasted secret in the wrong field must
// not reach a log through our error message.
func TestNonHexErrorHidesTheCharacter(t *testing.T) {
	_, err := keycrypto.ParsePublicKeyHex("30820222zebra-horse-battery-staple")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, leak := range []string{"zebra", "z", "horse"} {
		if strings.Contains(err.Error(), leak) {
			t.Fatalf("error %q echoes the input (%q)", err, leak)
		}
	}
}

func pemBlock(typ string, der []byte, headers map[string]string) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: der}))
}

func TestParsePublicKeyPEM(t *testing.T) {
	v := loadRSAVector(t)
	der, _ := hex.DecodeString(v.hex)
	pkcs1 := x509.MarshalPKCS1PublicKey(&testkeys.RSA(0).PublicKey)

	for _, tc := range []struct {
		name, in, want string // want "" means accepted
	}{
		{"openssl vector", v.pem, ""},
		{"leading and trailing whitespace", "\n\n  " + v.pem + "\n\n", ""},
		{"CRLF line ends", strings.ReplaceAll(v.pem, "\n", "\r\n"), ""},
		{"RSA PUBLIC KEY block (PKCS#1)", pemBlock("RSA PUBLIC KEY", pkcs1, nil), `"RSA PUBLIC KEY" (PKCS#1); want "PUBLIC KEY"`},
		{"SPKI bytes in an RSA PUBLIC KEY block", pemBlock("RSA PUBLIC KEY", der, nil), "PKCS#1"},
		{"PKCS#1 bytes in a PUBLIC KEY block", pemBlock("PUBLIC KEY", pkcs1, nil), "PKCS#1 RSAPublicKey"},
		{"certificate block", pemBlock("CERTIFICATE", der, nil), `type is "CERTIFICATE"`},
		{"private key block", pemBlock("PRIVATE KEY", der, nil), `type is "PRIVATE KEY"`},
		{"trailing data", v.pem + "SECRET-TAIL", "11 byte(s) of trailing data"},
		{"second block", v.pem + v.pem, "trailing data after the PEM block"},
		{"leading text", "key: " + v.pem, "no PEM block at the start"},
		{"raw hex, no armour", v.hex, "no PEM block"},
		{"empty", "", "no PEM block"},
		{"missing END line", strings.Replace(v.pem, "-----END PUBLIC KEY-----", "", 1), "malformed"},
		{"broken base64", strings.Replace(v.pem, "M", "*", 3), "malformed"},
		{"encrypted-PEM headers", pemBlock("PUBLIC KEY", der, map[string]string{"Proc-Type": "4,ENCRYPTED"}), "headers"},
		{"EC key", pemBlock("PUBLIC KEY", mustSPKI(t, &testkeys.EC(0).PublicKey), nil), "not RSA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := keycrypto.ParsePublicKeyPEM([]byte(tc.in))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if k.Hex() != v.hex {
					t.Fatal("parsed to another key")
				}
				return
			}
			if !errors.Is(err, keycrypto.ErrInvalidPublicKey) || k != nil {
				t.Fatalf("err = %v, key %v; want ErrInvalidPublicKey and no key", err, k)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("error %q echoes input", err)
			}
		})
	}
}

func mustSPKI(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestHexToPEMOffByOne is the provider's first classic mistake: a hex→PEM
// conversion that loses or gains one byte. Each variant is rejected with a
// precise reason, and a PEM built from byte-shifted hex parses neither here
// nor in openssl.
func TestHexToPEMOffByOne(t *testing.T) {
	v := loadRSAVector(t)
	for _, tc := range []struct {
		name, hex, want string
		// opensslRejects: openssl 3 tolerates trailing bytes after the
		// SPKI, so that variant is caught by us alone.
		opensslRejects bool
	}{
		{"last byte lost", v.hex[:len(v.hex)-2], "truncated", true},
		{"extra byte appended", v.hex + "ff", "1 extra trailing byte", false},
		{"first byte lost", v.hex[2:], "does not start with a SEQUENCE", true},
		{"second byte lost, rest shifted", "30" + v.hex[4:] + "00", "extra trailing byte", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := keycrypto.HexToPEM(tc.hex)
			if !errors.Is(err, keycrypto.ErrInvalidPublicKey) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("HexToPEM: err = %v, want ErrInvalidPublicKey saying %q", err, tc.want)
			}
			// The naive conversion, done by hand: decode, armour, no checks.
			raw, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			naive := pemBlock("PUBLIC KEY", raw, nil)
			if _, err := keycrypto.ParsePublicKeyPEM([]byte(naive)); !errors.Is(err, keycrypto.ErrInvalidPublicKey) {
				t.Fatalf("ParsePublicKeyPEM accepted the off-by-one PEM: %v", err)
			}
			if !tc.opensslRejects {
				return
			}
			file := writeTemp(t, "naive.pem", []byte(naive))
			if out, err := openssl(t, nil, "pkey", "-pubin", "-in", file, "-noout"); err == nil {
				t.Fatalf("openssl parsed the off-by-one PEM: %s", out)
			}
		})
	}
	// Control: the same naive path with the right hex is fine for openssl.
	raw, _ := hex.DecodeString(v.hex)
	file := writeTemp(t, "good.pem", []byte(pemBlock("PUBLIC KEY", raw, nil)))
	mustOpenssl(t, nil, "pkey", "-pubin", "-in", file, "-noout")
}

// TestPublicKeyRoundTrips: hex → DER → PEM → hex is the identity for
// several pool keys, PEM is 64-column "PUBLIC KEY" armour, and the key
// keeps its own copy of the DER.
func TestPublicKeyRoundTrips(t *testing.T) {
	for i := range 6 {
		k, err := keycrypto.PublicKeyFromPrivate(testkeys.RSA(i))
		if err != nil {
			t.Fatalf("RSA(%d): %v", i, err)
		}
		h := k.Hex()
		if len(h) != keycrypto.SPKIHexLen || !strings.HasPrefix(h, "30820222300d06092a864886f70d0101010500") {
			t.Fatalf("RSA(%d): hex has unexpected shape", i)
		}
		p, err := keycrypto.HexToPEM(h)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(p, "\n"), "\n")
		if lines[0] != "-----BEGIN PUBLIC KEY-----" || lines[len(lines)-1] != "-----END PUBLIC KEY-----" {
			t.Fatalf("PEM armour: %q … %q", lines[0], lines[len(lines)-1])
		}
		for _, l := range lines[1 : len(lines)-1] {
			if len(l) > 64 {
				t.Fatalf("PEM line of %d columns", len(l))
			}
		}
		back, err := keycrypto.ParsePublicKeyPEM([]byte(p))
		if err != nil {
			t.Fatal(err)
		}
		byDER, err := keycrypto.ParsePublicKeyDER(back.DER)
		if err != nil {
			t.Fatal(err)
		}
		if byDER.Hex() != h || back.Fingerprint() != k.Fingerprint() {
			t.Fatalf("RSA(%d): round trip changed the key", i)
		}
	}

	der := mustSPKI(t, &testkeys.RSA(0).PublicKey)
	k, err := keycrypto.ParsePublicKeyDER(der)
	if err != nil {
		t.Fatal(err)
	}
	want := k.Hex()
	der[100] ^= 0xff
	if k.Hex() != want {
		t.Fatal("PublicKey shares the caller's DER slice")
	}
}

func TestPublicKeyFromPrivateRejectsNil(t *testing.T) {
	if _, err := keycrypto.PublicKeyFromPrivate(nil); !errors.Is(err, keycrypto.ErrInvalidPublicKey) {
		t.Fatalf("err = %v", err)
	}
}
