package auth

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// presentedCert is what a call's transport says about a client certificate.
type presentedCert struct {
	// leaf is the verified client certificate; nil when none was presented.
	leaf *x509.Certificate
}

// certFromPeer returns the verified client certificate of the call's
// connection. A certificate presented but not verified against the client
// CA (a server configured to request certificates without verifying them)
// is a refusal, never an identity.
func certFromPeer(ctx context.Context) (presentedCert, *refusal) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return presentedCert{}, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return presentedCert{}, nil
	}
	if len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return presentedCert{}, &refusal{reason: ReasonCertUnknown, message: msgCertUnverified}
	}
	return presentedCert{leaf: info.State.VerifiedChains[0][0]}, nil
}

// NamesInCertificate returns the distinct names of callers in the set that
// the certificate names, in the order found. Only exact matches count:
//
//   - each URI SAN names the caller whose name is the whole URI (e.g.
//     "spiffe://prod.example/wallet-api");
//   - with a trust domain (recoveryd's --client-trust-domain), a SPIFFE ID
//     of that trust domain also names the caller whose name is exactly its
//     path without the leading slash ("spiffe://prod.example/wallet-api"
//     names "wallet-api", "spiffe://prod.example/ns/pay/sa/wallet-api" names
//     "ns/pay/sa/wallet-api"); a zero trustDomain turns this off;
//   - each DNS SAN names the caller whose name is exactly that DNS name
//     (no wildcard expansion, case-sensitive: write names in lowercase);
//   - the subject common name and every other field are ignored.
//
// NOTE: no suffix or last-segment match: any CA the operator trusts may sign
// "spiffe://attacker.example/ns/dev/sa/support-tool", which must not become
// "support-tool" (who may act for every organisation).
//
// A certificate authenticates a caller only when exactly one name results;
// more than one is a conflict, none is an unknown certificate.
func (s *CallerSet) NamesInCertificate(cert *x509.Certificate, trustDomain spiffeid.TrustDomain) []string {
	var names []string
	add := func(name string) bool {
		if _, ok := s.byName[name]; !ok {
			return false
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
		return true
	}
	for _, uri := range cert.URIs {
		if add(uri.String()) || trustDomain.IsZero() {
			continue
		}
		// spiffeid.FromURI refuses what is not a well-formed SPIFFE ID (a
		// port, user info, a query, dot segments, an empty path).
		if id, err := spiffeid.FromURI(uri); err == nil && id.MemberOf(trustDomain) {
			add(strings.TrimPrefix(id.Path(), "/"))
		}
	}
	for _, dns := range cert.DNSNames {
		add(dns)
	}
	return names
}

// ParseTrustDomain parses a SPIFFE trust domain ("prod.example", or
// "spiffe://prod.example"), as recoveryd's --client-trust-domain takes it;
// "" is the zero TrustDomain (no SPIFFE path matching).
func ParseTrustDomain(name string) (spiffeid.TrustDomain, error) {
	if name == "" {
		return spiffeid.TrustDomain{}, nil
	}
	// NOTE: spiffeid would take a whole SPIFFE ID's trust domain; an
	// operator who wrote one meant something else, so say so instead.
	if strings.Contains(strings.TrimPrefix(name, "spiffe://"), "/") {
		return spiffeid.TrustDomain{}, fmt.Errorf("trust domain %q has a path: give only the trust domain (e.g. prod.example), whose SPIFFE IDs' paths name callers", name)
	}
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("trust domain %q: %w (e.g. prod.example: lowercase letters, digits, '.', '-' and '_')", name, err)
	}
	return td, nil
}
