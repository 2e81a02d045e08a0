package keycrypto_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// now is the fixed "current time" of the eligibility tests.
var now = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

// jwkEntry is a well-formed, eligible JWKS entry for pool key i, as a map
// so each test case can break exactly one thing.
func jwkEntry(i int) map[string]any {
	k := &testkeys.EC(i).PublicKey
	p, _ := k.Bytes()
	return map[string]any{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
		"kid":                 fmt.Sprintf("enclave-signing-key-v%d", i+1),
		"x":                   base64.RawURLEncoding.EncodeToString(p[1:33]),
		"y":                   base64.RawURLEncoding.EncodeToString(p[33:]),
		"coincover:purposes":  []string{"assignment-sig", "policy-sig"},
		"coincover:validFrom": "2026-06-23T00:00:00Z",
	}
}

func jwksDoc(t testing.TB, entries ...map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": entries})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func with(e map[string]any, k string, v any) map[string]any {
	e[k] = v
	return e
}

func without(e map[string]any, k string) map[string]any {
	delete(e, k)
	return e
}

// offCurveY is pool key 0's y plus one: a well-formed 32-byte coordinate
// whose point is not on P-256.
func offCurveY() string {
	p, _ := testkeys.EC(0).PublicKey.Bytes()
	y := new(big.Int).SetBytes(p[33:])
	y.Add(y, big.NewInt(1))
	return base64.RawURLEncoding.EncodeToString(y.FillBytes(make([]byte, 32)))
}

// TestJWKSEligibility is the contract's table: which entries are parsed,
// which are skipped, which make the whole document invalid, and which are
// eligible at now.
func TestJWKSEligibility(t *testing.T) {
	const (
		eligible = "eligible"
		parsed   = "parsed, not eligible"
		skipped  = "skipped"
		invalid  = "invalid"
	)
	for _, tc := range []struct {
		name  string
		entry map[string]any
		want  string
	}{
		{"contract example", jwkEntry(0), eligible},
		{"only assignment-sig", with(jwkEntry(0), "coincover:purposes", []string{"assignment-sig"}), eligible},
		{"no validFrom", without(jwkEntry(0), "coincover:validFrom"), eligible},
		{"validFrom exactly now", with(jwkEntry(0), "coincover:validFrom", now.Format(time.RFC3339)), eligible},
		{"validFrom with offset, in the past", with(jwkEntry(0), "coincover:validFrom", "2026-07-01T13:59:59+02:00"), eligible},
		{"validFrom in the future", with(jwkEntry(0), "coincover:validFrom", "2026-07-01T12:00:01Z"), parsed},
		{"missing purposes", without(jwkEntry(0), "coincover:purposes"), parsed},
		{"policy-sig only", with(jwkEntry(0), "coincover:purposes", []string{"policy-sig"}), parsed},
		{"empty purposes", with(jwkEntry(0), "coincover:purposes", []string{}), parsed},
		{"purpose differs in case", with(jwkEntry(0), "coincover:purposes", []string{"Assignment-Sig"}), parsed},
		{"kty RSA", with(jwkEntry(0), "kty", "RSA"), skipped},
		{"kty OKP", with(jwkEntry(0), "kty", "OKP"), skipped},
		{"crv P-384", with(jwkEntry(0), "crv", "P-384"), skipped},
		{"crv secp256k1", with(jwkEntry(0), "crv", "secp256k1"), skipped},
		{"alg ES384", with(jwkEntry(0), "alg", "ES384"), skipped},
		{"alg missing", without(jwkEntry(0), "alg"), skipped},
		{"use enc", with(jwkEntry(0), "use", "enc"), skipped},
		{"use missing", without(jwkEntry(0), "use"), skipped},
		{"member names in other case", map[string]any{"KTY": "EC", "CRV": "P-256", "ALG": "ES256", "USE": "sig", "x": "", "y": ""}, skipped},
		{"point off the curve", with(jwkEntry(0), "y", offCurveY()), invalid},
		{"x of 31 bytes", with(jwkEntry(0), "x", base64.RawURLEncoding.EncodeToString(make([]byte, 31))), invalid},
		{"x padded base64url", with(jwkEntry(0), "x", jwkEntry(0)["x"].(string)+"="), invalid},
		{"x standard base64", with(jwkEntry(0), "x", strings.NewReplacer("-", "+", "_", "/").Replace(jwkEntry(0)["x"].(string))+"+/"), invalid},
		{"y missing", without(jwkEntry(0), "y"), invalid},
		{"x not a string", with(jwkEntry(0), "x", 7), invalid},
		{"kid not a string", with(jwkEntry(0), "kid", 7), invalid},
		{"kty null", with(jwkEntry(0), "kty", nil), invalid},
		{"purposes not strings", with(jwkEntry(0), "coincover:purposes", []int{1}), invalid},
		{"purposes a string", with(jwkEntry(0), "coincover:purposes", "assignment-sig"), invalid},
		{"validFrom not RFC 3339", with(jwkEntry(0), "coincover:validFrom", "23/06/2026"), invalid},
		{"validFrom pushed past year 9999 by its offset", with(jwkEntry(0), "coincover:validFrom", "9999-12-31T23:00:00-02:00"), invalid},
		{"private key d present", with(jwkEntry(0), "d", "AAAA"), invalid},
		{"private d on a skipped RSA entry", map[string]any{"kty": "RSA", "d": "AAAA"}, invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := keycrypto.ParseJWKS(jwksDoc(t, jwkEntry(1), tc.entry))
			if tc.want == invalid {
				if !errors.Is(err, keycrypto.ErrInvalidJWKS) || set != nil {
					t.Fatalf("err = %v, want ErrInvalidJWKS and no set", err)
				}
				if !strings.Contains(err.Error(), "keys[1]") {
					t.Fatalf("error %q does not name the entry", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Entry 0 of the document (pool key 1) is always eligible.
			var got string
			switch {
			case len(set.Keys) == 1:
				got = skipped
			case len(set.Keys) == 2 && len(set.Eligible(now)) == 2:
				got = eligible
			case len(set.Keys) == 2 && len(set.Eligible(now)) == 1:
				got = parsed
			default:
				t.Fatalf("%d keys, %d eligible", len(set.Keys), len(set.Eligible(now)))
			}
			if got != tc.want {
				t.Fatalf("entry is %s, want %s", got, tc.want)
			}
			if got != skipped && !set.Keys[1].Key.Equal(&testkeys.EC(0).PublicKey) {
				t.Fatal("parsed point differs from the key it was made from")
			}
		})
	}
}

func TestParseJWKSDocument(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string // want "" means accepted
	}{
		{"empty key list", `{"keys":[]}`, ""},
		{"extra members ignored", `{"keys":[],"other":1}`, ""},
		{"not JSON", `keys`, "not a JSON object"},
		{"array", `[]`, "not a JSON object"},
		{"no keys", `{}`, `no "keys" member`},
		{"keys null", `{"keys":null}`, "not an array"},
		{"keys an object", `{"keys":{}}`, "not an array"},
		{"entry a number", `{"keys":[1]}`, "not an array of objects"},
		{"entry null", `{"keys":[null]}`, "not an object"},
		{"trailing data", `{"keys":[]} x`, "not a JSON object"},
		{"empty", ``, "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := keycrypto.ParseJWKS([]byte(tc.doc))
			if tc.want == "" {
				if err != nil || set == nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if !errors.Is(err, keycrypto.ErrInvalidJWKS) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidJWKS saying %q", err, tc.want)
			}
		})
	}
}

// TestJWKSRotation: during a rotation two live keys both verify; a retired
// key (purpose withdrawn) and a key not yet valid do not, until it is.
func TestJWKSRotation(t *testing.T) {
	v := loadRSAVector(t)
	retired := with(jwkEntry(2), "coincover:purposes", []string{"policy-sig"})
	next := with(jwkEntry(3), "coincover:validFrom", "2026-08-01T00:00:00Z")
	set, err := keycrypto.ParseJWKS(jwksDoc(t, jwkEntry(0), jwkEntry(1), retired, next))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 4 {
		t.Fatalf("%d keys parsed, want 4", len(set.Keys))
	}
	later := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		signer int
		at     time.Time
		ok     bool
	}{
		{0, now, true},
		{1, now, true},
		{2, now, false}, // retired
		{3, now, false}, // not yet valid
		{3, later, true},
		{4, now, false}, // not in the set at all
	} {
		a := keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: sign(t, tc.signer, v.hex)}
		err := keycrypto.VerifySignature(set.Eligible(tc.at), a)
		if tc.ok && err != nil {
			t.Errorf("signer %d at %s: %v", tc.signer, tc.at, err)
		}
		if !tc.ok && !errors.Is(err, keycrypto.ErrSignatureInvalid) {
			t.Errorf("signer %d at %s: err = %v, want ErrSignatureInvalid", tc.signer, tc.at, err)
		}
	}
	onlyFuture, err := keycrypto.ParseJWKS(jwksDoc(t, next))
	if err != nil {
		t.Fatal(err)
	}
	a := keycrypto.SignedAssignment{PublicKeyHex: v.hex, Signature: sign(t, 3, v.hex)}
	if err := keycrypto.VerifySignature(onlyFuture.Eligible(now), a); !errors.Is(err, keycrypto.ErrNoVerificationKey) {
		t.Fatalf("no eligible key: err = %v, want ErrNoVerificationKey", err)
	}
	var nilSet *keycrypto.KeySet
	if nilSet.Eligible(now) != nil {
		t.Fatal("nil KeySet has eligible keys")
	}
}

func TestParseVerificationKeysPEM(t *testing.T) {
	one := readTestdata(t, "ecp256-00.pub.pem") // made by openssl from testkeys.EC(0)
	set, err := keycrypto.ParseVerificationKeysPEM([]byte(one))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || !set.Keys[0].Key.Equal(&testkeys.EC(0).PublicKey) {
		t.Fatal("openssl PEM does not parse to testkeys.EC(0)")
	}
	if got := set.Eligible(now); len(got) != 1 || got[0].KID != "" || got[0].Purposes[0] != keycrypto.PurposeAssignmentSig {
		t.Fatalf("PEM key is not eligible with purpose %s: %+v", keycrypto.PurposeAssignmentSig, got)
	}
	second := pemBlock("PUBLIC KEY", mustSPKI(t, &testkeys.EC(1).PublicKey), nil)
	two, err := keycrypto.ParseVerificationKeysPEM([]byte(one + "\n" + second))
	if err != nil || len(two.Keys) != 2 {
		t.Fatalf("two blocks: %v", err)
	}

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "no PEM block"},
		{"RSA key", loadRSAVector(t).pem, "not a P-256"},
		{"P-384 key", pemBlock("PUBLIC KEY", mustSPKI(t, &p384.PublicKey), nil), "not a P-256"},
		{"wrong block type", pemBlock("EC PUBLIC KEY", mustSPKI(t, &testkeys.EC(0).PublicKey), nil), `"EC PUBLIC KEY"`},
		{"trailing garbage", one + "garbage", "block 1: data that is not a PEM block"},
		{"leading garbage", "garbage" + one, "block 0"},
		{"broken armour", strings.Replace(one, "-----END PUBLIC KEY-----", "", 1), "malformed"},
		{"not DER", pemBlock("PUBLIC KEY", []byte("nope"), nil), "block 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := keycrypto.ParseVerificationKeysPEM([]byte(tc.in))
			if !errors.Is(err, keycrypto.ErrInvalidJWKS) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidJWKS saying %q", err, tc.want)
			}
		})
	}
}

func goldenJWKs() []keycrypto.JWK {
	return []keycrypto.JWK{
		{KID: "enclave-signing-key-v1", Key: &testkeys.EC(0).PublicKey,
			Purposes: []string{"assignment-sig", "policy-sig"}, ValidFrom: time.Date(2026, 6, 23, 0, 0, 0, 0, time.UTC)},
		{KID: "enclave-signing-key-v2", Key: &testkeys.EC(1).PublicKey,
			Purposes: []string{"assignment-sig"}, ValidFrom: time.Date(2026, 8, 1, 2, 0, 0, 500, time.FixedZone("CEST", 2*3600))},
		{KID: "always", Key: &testkeys.EC(2).PublicKey},
	}
}

// TestMarshalJWKSGolden pins the published format (go test -run Golden
// -update rewrites it) and checks it parses back to the same keys.
func TestMarshalJWKSGolden(t *testing.T) {
	keys := goldenJWKs()
	got, err := keycrypto.MarshalJWKS(keys)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "jwks.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("MarshalJWKS output differs from %s:\n%s", golden, got)
	}

	set, err := keycrypto.ParseJWKS(got)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != len(keys) {
		t.Fatalf("%d keys back, want %d", len(set.Keys), len(keys))
	}
	for i, k := range keys {
		back := set.Keys[i]
		if back.KID != k.KID || !back.Key.Equal(k.Key) || !back.ValidFrom.Equal(k.ValidFrom) ||
			strings.Join(back.Purposes, ",") != strings.Join(k.Purposes, ",") {
			t.Errorf("key %d: %+v did not round-trip (got %+v)", i, k, back)
		}
	}
	if !strings.Contains(string(got), `"coincover:validFrom": "2026-08-01T00:00:00.0000005Z"`) {
		t.Error("validFrom is not written in UTC with its fraction")
	}
}

func TestMarshalJWKSRejects(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  keycrypto.JWK
	}{
		{"no kid", keycrypto.JWK{Key: &testkeys.EC(0).PublicKey}},
		{"no key", keycrypto.JWK{KID: "k"}},
		{"P-384", keycrypto.JWK{KID: "k", Key: &p384.PublicKey}},
		{"validFrom year 10000", keycrypto.JWK{KID: "k", Key: &testkeys.EC(0).PublicKey, ValidFrom: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	} {
		if _, err := keycrypto.MarshalJWKS([]keycrypto.JWK{tc.key}); !errors.Is(err, keycrypto.ErrInvalidJWKS) {
			t.Errorf("%s: err = %v, want ErrInvalidJWKS", tc.name, err)
		}
	}
	empty, err := keycrypto.MarshalJWKS(nil)
	if err != nil || !strings.Contains(string(empty), `"keys": []`) {
		t.Fatalf("empty set: %s, %v", empty, err)
	}
}
