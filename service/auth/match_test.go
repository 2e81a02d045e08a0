package auth_test

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

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
		entry("support", "t3", "org-2"),
		entry("batch.internal", "t4", "org-3"),
	)))
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
		name string
		uris []string
		dns  []string
		want []string
	}{
		{"SPIFFE ID, last segment", []string{"spiffe://prod.example/ns/payments/sa/wallet-api"}, nil, []string{"wallet-api"}},
		{"trailing slash", []string{"https://callers.example/wallet-api/"}, nil, []string{"wallet-api"}},
		{"whole URI wins over its last segment", []string{"spiffe://prod.example/support"}, nil, []string{"spiffe://prod.example/support"}},
		{"other trust domain: last segment only", []string{"spiffe://other.example/support"}, nil, []string{"support"}},
		{"URI without a path", []string{"spiffe://wallet-api"}, nil, nil},
		{"opaque URN", []string{"urn:caller:wallet-api"}, nil, nil},
		{"DNS name", nil, []string{"batch.internal"}, []string{"batch.internal"}},
		{"DNS name, other case", nil, []string{"Batch.Internal"}, nil},
		{"DNS wildcard is not expanded", nil, []string{"*.internal"}, nil},
		{"unknown names", []string{"spiffe://prod.example/stranger"}, []string{"stranger.internal"}, nil},
		{"the same caller twice", []string{"spiffe://a.example/wallet-api"}, []string{"wallet-api"}, []string{"wallet-api"}},
		{"two callers", []string{"spiffe://a.example/wallet-api"}, []string{"batch.internal"}, []string{"wallet-api", "batch.internal"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := &x509.Certificate{DNSNames: tt.dns}
			for _, s := range tt.uris {
				cert.URIs = append(cert.URIs, uri(s))
			}
			if got := set.NamesInCertificate(cert); !slices.Equal(got, tt.want) {
				t.Fatalf("NamesInCertificate = %q, want %q", got, tt.want)
			}
		})
	}
}
