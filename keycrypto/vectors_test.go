package keycrypto_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

// The known-good vectors in testdata/ were made by make-vectors.sh with the
// openssl CLI from testkeys.RSA(0) and testkeys.EC(0), independently of
// this package.
type rsaVector struct {
	pem, hex, fingerprint string
}

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func loadRSAVector(t testing.TB) rsaVector {
	t.Helper()
	return rsaVector{
		pem:         readTestdata(t, "rsa4096-00.pub.pem"),
		hex:         strings.TrimSpace(readTestdata(t, "rsa4096-00.der.hex")),
		fingerprint: strings.TrimSpace(readTestdata(t, "rsa4096-00.sha256")),
	}
}

func TestVectorShape(t *testing.T) {
	v := loadRSAVector(t)
	const prefix = "30820222300d06092a864886f70d0101010500"
	if !strings.HasPrefix(v.hex, prefix) {
		t.Errorf("vector hex starts %q, want %q", v.hex[:len(prefix)], prefix)
	}
	if len(v.hex) != 1100 || keycrypto.SPKIHexLen != 1100 {
		t.Errorf("vector hex is %d chars, want 1100", len(v.hex))
	}
	if len(v.fingerprint) != 64 {
		t.Errorf("fingerprint is %d chars, want 64", len(v.fingerprint))
	}
}

// TestKnownGoodVector is the provider's advice "always test against a
// known-good key": Go's hex→PEM, PEM→hex and fingerprint must give exactly
// what openssl gave.
func TestKnownGoodVector(t *testing.T) {
	v := loadRSAVector(t)

	pemFromHex, err := keycrypto.HexToPEM(v.hex)
	if err != nil {
		t.Fatalf("HexToPEM(openssl hex): %v", err)
	}
	if pemFromHex != v.pem {
		t.Errorf("HexToPEM(openssl hex) differs from openssl's PEM:\n%s\nwant\n%s", pemFromHex, v.pem)
	}

	fromPEM, err := keycrypto.ParsePublicKeyPEM([]byte(v.pem))
	if err != nil {
		t.Fatalf("ParsePublicKeyPEM(openssl PEM): %v", err)
	}
	if got := fromPEM.Hex(); got != v.hex {
		t.Errorf("Hex() of openssl PEM differs from openssl's hex")
	}
	if got := fromPEM.Fingerprint(); got != v.fingerprint {
		t.Errorf("Fingerprint() = %s, openssl says %s", got, v.fingerprint)
	}
	if len(fromPEM.DER) != keycrypto.SPKIDERLen {
		t.Errorf("DER is %d bytes, want %d", len(fromPEM.DER), keycrypto.SPKIDERLen)
	}

	upper, err := keycrypto.ParsePublicKeyHex(strings.ToUpper(v.hex))
	if err != nil {
		t.Fatalf("upper-case hex: %v", err)
	}
	if upper.Hex() != v.hex {
		t.Error("upper-case hex does not normalise to openssl's lowercase hex")
	}

	fromPriv, err := keycrypto.PublicKeyFromPrivate(testkeys.RSA(0))
	if err != nil {
		t.Fatal(err)
	}
	if fromPriv.Hex() != v.hex || fromPriv.PEM() != v.pem || fromPriv.Fingerprint() != v.fingerprint {
		t.Error("PublicKeyFromPrivate(testkeys.RSA(0)) does not match openssl's vectors")
	}
	if fromPriv.RSA.N.Cmp(testkeys.RSA(0).N) != 0 {
		t.Error("parsed modulus differs from the private key's")
	}
}
