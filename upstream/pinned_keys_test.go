package upstream_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream"
)

func TestParseVerificationKeyFingerprints(t *testing.T) {
	const fp = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	colons := strings.ToUpper(fp[:2]) + ":" + strings.ToUpper(fp[2:])
	got, err := upstream.ParseVerificationKeyFingerprints(" " + fp + "," + colons + ",")
	if err != nil || len(got) != 1 || got[0] != fp {
		t.Errorf("Parse = %q, %v; want [%s] (case, colons and duplicates ignored)", got, err, fp)
	}
	for _, bad := range []string{"", " , ", "abc", fp + "00", "sha256:" + fp} {
		if _, err := upstream.ParseVerificationKeyFingerprints(bad); err == nil {
			t.Errorf("Parse(%q) = nil error, want a refusal", bad)
		}
	}
}

// TestPinKeys: only pinned keys are served; none pinned is
// ErrNoVerificationKey, never the unpinned keys.
func TestPinKeys(t *testing.T) {
	a, b := testkeys.EC(0), testkeys.EC(1)
	src := upstream.NewStaticKeySource(&keycrypto.KeySet{Keys: []keycrypto.VerificationKey{
		{KID: "a", Key: &a.PublicKey, Purposes: []string{keycrypto.PurposeAssignmentSig}},
		{KID: "b", Key: &b.PublicKey, Purposes: []string{keycrypto.PurposeAssignmentSig}},
	}})
	fpB, err := upstream.VerificationKeyFingerprint(&b.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, get := range []func(upstream.KeySource) ([]keycrypto.VerificationKey, error){
		func(s upstream.KeySource) ([]keycrypto.VerificationKey, error) { return s.Keys(context.Background()) },
		func(s upstream.KeySource) ([]keycrypto.VerificationKey, error) {
			return s.Refresh(context.Background())
		},
	} {
		keys, err := get(upstream.PinKeys(src, []string{fpB}))
		if err != nil || len(keys) != 1 || keys[0].KID != "b" {
			t.Errorf("pinned to b: %v, %v; want only b", keys, err)
		}
		keys, err = get(upstream.PinKeys(src, []string{strings.Repeat("0", 64)}))
		if !errors.Is(err, keycrypto.ErrNoVerificationKey) || len(keys) != 0 {
			t.Errorf("pinned to no served key: %v, %v; want ErrNoVerificationKey", keys, err)
		}
	}
}
