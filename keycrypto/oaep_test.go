package keycrypto_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

func poolPublicKey(t *testing.T, i int) *keycrypto.PublicKey {
	t.Helper()
	k, err := keycrypto.PublicKeyFromPrivate(testkeys.RSA(i))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEncryptLimits(t *testing.T) {
	pub := poolPublicKey(t, 3)
	secret := []byte(strings.Repeat("SECRET", 100))
	for _, tc := range []struct {
		name    string
		key     *keycrypto.PublicKey
		in      []byte
		wantErr error
	}{
		{"one byte", pub, []byte{0}, nil},
		{"446 bytes, the maximum", pub, secret[:keycrypto.MaxPlaintextLen], nil},
		{"447 bytes", pub, secret[:keycrypto.MaxPlaintextLen+1], keycrypto.ErrPlaintextTooLarge},
		{"600 bytes", pub, secret, keycrypto.ErrPlaintextTooLarge},
		{"empty", pub, []byte{}, keycrypto.ErrEmptyPlaintext},
		{"nil", pub, nil, keycrypto.ErrEmptyPlaintext},
		{"nil key", nil, []byte("x"), keycrypto.ErrInvalidPublicKey},
		{"key without RSA", &keycrypto.PublicKey{}, []byte("x"), keycrypto.ErrInvalidPublicKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, err := keycrypto.Encrypt(rand.Reader, tc.key, tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || ct != nil {
					t.Fatalf("err = %v (ciphertext %d bytes), want %v", err, len(ct), tc.wantErr)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Fatalf("error %q echoes plaintext", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ct) != keycrypto.CiphertextLen {
				t.Fatalf("ciphertext is %d bytes, want %d", len(ct), keycrypto.CiphertextLen)
			}
			got, err := keycrypto.Decrypt(testkeys.RSA(3), ct)
			if err != nil || !bytes.Equal(got, tc.in) {
				t.Fatalf("round trip: err %v, equal %t", err, bytes.Equal(got, tc.in))
			}
		})
	}
	if !strings.Contains(must(keycrypto.Encrypt(nil, pub, secret[:447])).Error(), "447 bytes, at most 446") {
		t.Error("too-large error does not give the sizes")
	}
}

// must returns the error of a two-result call, for message checks.
func must[T any](_ T, err error) error { return err }

func TestEncryptIsRandomised(t *testing.T) {
	pub := poolPublicKey(t, 3)
	a, err := keycrypto.Encrypt(rand.Reader, pub, []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := keycrypto.Encrypt(nil, pub, []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two encryptions of the same plaintext are identical: OAEP seed is not random")
	}
}

// TestOAEPHashesAreExplicit shows in Go alone what the openssl tests show
// across tools: our ciphertext is OAEP-SHA256 with MGF1-SHA256, and a block
// with MGF1-SHA1 (the classic mismatch) does not open.
func TestOAEPHashesAreExplicit(t *testing.T) {
	priv := testkeys.RSA(4)
	pub := poolPublicKey(t, 4)
	msg := []byte("key share 3 of 5")

	ct, err := keycrypto.Encrypt(rand.Reader, pub, msg)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := priv.Decrypt(nil, ct, &rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA256}); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("not OAEP-SHA256/MGF1-SHA256: %v", err)
	}
	if _, err := priv.Decrypt(nil, ct, &rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA1}); err == nil {
		t.Fatal("our ciphertext opens with MGF1-SHA1")
	}

	for _, opts := range []rsa.OAEPOptions{
		{Hash: crypto.SHA256, MGFHash: crypto.SHA1},
		{Hash: crypto.SHA1, MGFHash: crypto.SHA1},
		{Hash: crypto.SHA256, MGFHash: crypto.SHA256, Label: []byte("label")},
	} {
		wrong, err := rsa.EncryptOAEPWithOptions(rand.Reader, &priv.PublicKey, msg, &opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := keycrypto.Decrypt(priv, wrong); !errors.Is(err, keycrypto.ErrDecrypt) {
			t.Fatalf("block with %v/%v label %q: err = %v, want ErrDecrypt", opts.Hash, opts.MGFHash, opts.Label, err)
		}
	}
}

func TestDecryptRejects(t *testing.T) {
	pub := poolPublicKey(t, 5)
	ct, err := keycrypto.Encrypt(rand.Reader, pub, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(ct)
	flipped[100] ^= 1
	for _, tc := range []struct {
		name string
		priv *rsa.PrivateKey
		ct   []byte
		want string
	}{
		{"other key", testkeys.RSA(6), ct, "not an OAEP-SHA256/MGF1-SHA256 block"},
		{"flipped bit", testkeys.RSA(5), flipped, "not an OAEP"},
		{"short", testkeys.RSA(5), ct[:511], "511 bytes, want 512"},
		{"long", testkeys.RSA(5), append(bytes.Clone(ct), 0), "513 bytes, want 512"},
		{"empty", testkeys.RSA(5), nil, "0 bytes"},
		{"nil key", nil, ct, "no private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := keycrypto.Decrypt(tc.priv, tc.ct)
			if !errors.Is(err, keycrypto.ErrDecrypt) || got != nil {
				t.Fatalf("err = %v, plaintext %d bytes; want ErrDecrypt and none", err, len(got))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// TestGenerateRecoveryKey is the package's one RSA-4096 generation: the
// enclave side must make keys our own parser accepts.
func TestGenerateRecoveryKey(t *testing.T) {
	priv, err := keycrypto.GenerateRecoveryKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := keycrypto.PublicKeyFromPrivate(priv)
	if err != nil {
		t.Fatalf("generated key does not parse: %v", err)
	}
	if len(pub.Hex()) != keycrypto.SPKIHexLen {
		t.Fatalf("hex is %d chars", len(pub.Hex()))
	}
	for i := range testkeys.RSACount {
		if testkeys.RSA(i).N.Cmp(priv.N) == 0 {
			t.Fatalf("generated key equals pool key %d", i)
		}
	}
}
