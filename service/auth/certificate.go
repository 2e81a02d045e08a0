package auth

import (
	"context"
	"crypto/x509"
	"path"
	"slices"
	"strings"

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
// the certificate names, in the order found. The rule:
//
//   - each URI SAN names the caller whose name is the whole URI (e.g.
//     "spiffe://prod.example/wallet-api"); failing that, the caller whose
//     name is the URI path's last segment (so the SPIFFE ID
//     "spiffe://prod.example/ns/payments/sa/wallet-api" names "wallet-api");
//   - each DNS SAN names the caller whose name is exactly that DNS name
//     (no wildcard expansion, case-sensitive: write names in lowercase);
//   - the subject common name and every other field are ignored.
//
// A certificate authenticates a caller only when exactly one name results;
// more than one is a conflict, none is an unknown certificate.
func (s *CallerSet) NamesInCertificate(cert *x509.Certificate) []string {
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
		if add(uri.String()) {
			continue
		}
		if segment := lastPathSegment(uri.Path); segment != "" {
			add(segment)
		}
	}
	for _, dns := range cert.DNSNames {
		add(dns)
	}
	return names
}

// lastPathSegment is the final non-empty segment of a URI path, or "".
func lastPathSegment(p string) string {
	p = strings.TrimRight(p, "/")
	if p == "" {
		return ""
	}
	return path.Base(p)
}
