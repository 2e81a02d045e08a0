package auth_test

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/walletprovider/recoveryservice/service/auth"
)

// TestMatchTokenEveryPosition drives the constant-time comparison loop with
// the matching entry at every position (first, middle, last) and with no
// match at all: the branch-free index selection must still find the right
// caller each time.
func TestMatchTokenEveryPosition(t *testing.T) {
	const n = 17
	entries := make([]map[string]any, n)
	for i := range entries {
		entries[i] = entry(fmt.Sprintf("caller-%02d", i), fmt.Sprintf("token-%02d", i), fmt.Sprintf("org-%02d", i))
	}
	set, err := auth.LoadCallersFile(writeCallersFile(t, callersJSON(t, entries...)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		c, ok := set.MatchToken(fmt.Sprintf("token-%02d", i))
		want := fmt.Sprintf("caller-%02d", i)
		if !ok || c.Name != want || !slices.Equal(c.Organisations, []string{fmt.Sprintf("org-%02d", i)}) {
			t.Errorf("MatchToken(token-%02d) = %+v, %v; want %s", i, c, ok, want)
		}
	}
	for _, wrong := range []string{
		"",
		"token-17",
		"TOKEN-00",
		"token-00 ",
		digestOf("token-00"), // the file's digest is not a token
		strings.Repeat("x", 4096),
	} {
		if c, ok := set.MatchToken(wrong); ok {
			t.Errorf("MatchToken(%.20q) matched %s", wrong, c.Name)
		}
	}
}

func TestNamesInCertificate(t *testing.T) {
	set, err := auth.LoadCallersFile(writeCallersFile(t, callersJSON(t,
		entry("wallet-api", "t1", "org-1"),
		entry("spiffe://prod.example/support", "t2", "*"),
		entry("support-tool", "t3", "*"),
		entry("batch.internal", "t4", "org-3"),
		entry("ns/pay/sa/ledger", "t5", "org-4"),
	)))
	if err != nil {
		t.Fatal(err)
	}
	prod, err := auth.ParseTrustDomain("prod.example")
	if err != nil {
		t.Fatal(err)
	}
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name        string
		trustDomain spiffeid.TrustDomain
		uris        []string
		dns         []string
		want        []string
	}{
		{"whole URI", spiffeid.TrustDomain{}, []string{"spiffe://prod.example/support"}, nil, []string{"spiffe://prod.example/support"}},
		{"whole URI, with a trust domain", prod, []string{"spiffe://prod.example/support"}, nil, []string{"spiffe://prod.example/support"}},
		{"trust domain and exact path", prod, []string{"spiffe://prod.example/wallet-api"}, nil, []string{"wallet-api"}},
		{"trust domain and exact nested path", prod, []string{"spiffe://prod.example/ns/pay/sa/ledger"}, nil, []string{"ns/pay/sa/ledger"}},
		{"no trust domain: no path matching", spiffeid.TrustDomain{}, []string{"spiffe://prod.example/wallet-api"}, nil, nil},
		{"trust domain, path ending in a caller's name", prod, []string{"spiffe://prod.example/ns/payments/sa/wallet-api"}, nil, nil},
		// The attacks the last-segment rule let through: a certificate from
		// any trusted CA, of another trust domain or not SPIFFE at all.
		{"another trust domain ending in a caller's name", prod, []string{"spiffe://attacker.example/ns/dev/sa/support-tool"}, nil, nil},
		{"another trust domain, exact path", prod, []string{"spiffe://attacker.example/support-tool"}, nil, nil},
		{"https URI ending in a caller's name", prod, []string{"https://evil.example/x/support-tool"}, nil, nil},
		{"https URI on the trust domain's host", prod, []string{"https://prod.example/support-tool"}, nil, nil},
		{"no trust domain, another trust domain", spiffeid.TrustDomain{}, []string{"spiffe://attacker.example/ns/dev/sa/support-tool"}, nil, nil},
		{"trailing slash", prod, []string{"spiffe://prod.example/wallet-api/"}, nil, nil},
		{"URI without a path", prod, []string{"spiffe://wallet-api"}, nil, nil},
		{"opaque URN", prod, []string{"urn:caller:wallet-api"}, nil, nil},
		{"DNS name", prod, nil, []string{"batch.internal"}, []string{"batch.internal"}},
		{"DNS name, other case", prod, nil, []string{"Batch.Internal"}, nil},
		{"DNS wildcard is not expanded", prod, nil, []string{"*.internal"}, nil},
		{"unknown names", prod, []string{"spiffe://prod.example/stranger"}, []string{"stranger.internal"}, nil},
		{"the same caller twice", prod, []string{"spiffe://prod.example/wallet-api"}, []string{"wallet-api"}, []string{"wallet-api"}},
		{"two callers", prod, []string{"spiffe://prod.example/wallet-api"}, []string{"batch.internal"}, []string{"wallet-api", "batch.internal"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := &x509.Certificate{DNSNames: tt.dns}
			for _, s := range tt.uris {
				cert.URIs = append(cert.URIs, uri(s))
			}
			if got := set.NamesInCertificate(cert, tt.trustDomain); !slices.Equal(got, tt.want) {
				t.Fatalf("NamesInCertificate = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseTrustDomain(t *testing.T) {
	for in, want := range map[string]string{"": "", "prod.example": "prod.example", "spiffe://prod.example": "prod.example"} {
		td, err := auth.ParseTrustDomain(in)
		if err != nil || td.Name() != want {
			t.Errorf("ParseTrustDomain(%q) = %q, %v; want %q", in, td.Name(), err, want)
		}
	}
	for _, in := range []string{"Prod.Example", "prod example", "spiffe://prod.example/wallet-api"} {
		if _, err := auth.ParseTrustDomain(in); err == nil {
			t.Errorf("ParseTrustDomain(%q) accepted", in)
		}
	}
}
