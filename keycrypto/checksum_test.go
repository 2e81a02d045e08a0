package keycrypto_test

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

func TestChecksumVectors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	} {
		if got := keycrypto.Checksum([]byte(tc.in)); got != tc.want {
			t.Errorf("Checksum(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestValidateChecksum(t *testing.T) {
	const good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	for _, tc := range []struct {
		name, in, want, wantErr string
	}{
		{"lowercase", good, good, ""},
		{"uppercase is lowercased", strings.ToUpper(good), good, ""},
		{"63 characters", good[:63], "", "63 characters, want 64"},
		{"65 characters", good + "a", "", "65 characters, want 64"},
		{"empty", "", "", "0 characters"},
		{"non-hex", good[:7] + "g" + good[8:], "", "non-hex character at position 7"},
		{"base64 of a digest", "unq4v48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=", "", "44 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := keycrypto.ValidateChecksum(tc.in)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, keycrypto.ErrInvalidChecksum) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want ErrInvalidChecksum saying %q", err, tc.wantErr)
			}
		})
	}
}

// TestChecksumOverCiphertextIsCaught is the provider's third classic
// mistake. (The second, OAEP/MGF1 hash mismatch, is in interop_test.go and
// oaep_test.go; the first, hex→PEM off by one, in pubkey_test.go. The fourth,
// a sandbox base URL in production, belongs to upstream/ and is tested
// there, not here.)
func TestChecksumOverCiphertextIsCaught(t *testing.T) {
	plaintext := []byte("correct horse battery staple")
	ct, err := keycrypto.Encrypt(rand.Reader, poolPublicKey(t, 7), plaintext)
	if err != nil {
		t.Fatal(err)
	}
	wrong := keycrypto.Checksum(ct)
	right := keycrypto.Checksum(plaintext)
	if wrong == right {
		t.Fatal("checksum over ciphertext equals checksum over plaintext")
	}
	if err := keycrypto.VerifyChecksum(plaintext, right); err != nil {
		t.Fatalf("right checksum rejected: %v", err)
	}
	if err := keycrypto.VerifyChecksum(plaintext, strings.ToUpper(right)); err != nil {
		t.Fatalf("uppercase right checksum rejected: %v", err)
	}
	err = keycrypto.VerifyChecksum(plaintext, wrong)
	if !errors.Is(err, keycrypto.ErrChecksumMismatch) || !strings.Contains(err.Error(), "ciphertext") {
		t.Fatalf("checksum over ciphertext: err = %v, want ErrChecksumMismatch hinting at the ciphertext", err)
	}
	if strings.Contains(err.Error(), string(plaintext)) || strings.Contains(err.Error(), wrong) {
		t.Fatalf("mismatch error %q echoes plaintext or checksum", err)
	}
	// The enclave's view: decrypt, then compare with the sent checksum.
	opened, err := keycrypto.Decrypt(testkeys.RSA(7), ct)
	if err != nil {
		t.Fatal(err)
	}
	if err := keycrypto.VerifyChecksum(opened, wrong); !errors.Is(err, keycrypto.ErrChecksumMismatch) {
		t.Fatalf("enclave-side check passed a ciphertext checksum: %v", err)
	}
	if err := keycrypto.VerifyChecksum(plaintext, "xyz"); !errors.Is(err, keycrypto.ErrInvalidChecksum) {
		t.Fatalf("malformed checksum: %v", err)
	}
}

func TestZero(t *testing.T) {
	b := []byte("secret material")
	keycrypto.Zero(b)
	for i, c := range b {
		if c != 0 {
			t.Fatalf("byte %d is %#x after Zero", i, c)
		}
	}
	keycrypto.Zero(nil) // must not panic
}
