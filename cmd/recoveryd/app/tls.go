package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/upstream"
)

// serverCredentials is the gRPC server option for TLS, and mTLS with
// --client-ca, or nil (plaintext) without --tls-cert. The files are read once:
// rotating the server certificate needs a restart.
func serverCredentials(cfg Config) (grpc.ServerOption, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	// NOTE: with a client CA, a certificate is verified when presented but
	// not required (auth.ServerTLSConfig's default), because every caller in
	// the callers file also has a bearer token; a call with both must name
	// the same caller.
	tlsConfig, err := auth.ServerTLSConfig(cfg.TLSCert, cfg.TLSKey, cfg.ClientCA)
	if err != nil {
		return nil, fmt.Errorf("configuring TLS from --tls-cert, --tls-key and --client-ca: %w", err)
	}
	return grpc.Creds(credentials.NewTLS(tlsConfig)), nil
}

// upstreamTransport is the HTTP transport to the upstream and its JWKS:
// nil (the adapter's default, the system roots) without --upstream-ca-file,
// else one that trusts the system roots plus that file's CAs. Certificates
// are always verified; there is no way to turn that off.
func upstreamTransport(cfg Config) (http.RoundTripper, error) {
	if cfg.UpstreamCAFile == "" {
		return nil, nil
	}
	cas, err := loadCACertificates("--upstream-ca-file", cfg.UpstreamCAFile)
	if err != nil {
		return nil, err
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		// No system roots (a scratch container): the private CAs alone.
		roots = x509.NewCertPool()
	}
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	base, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("the default HTTP transport is a %T, not an *http.Transport", http.DefaultTransport)
	}
	t := upstream.KeepIdleConns(base.Clone())
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	return t, nil
}
