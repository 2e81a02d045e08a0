package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSOption adjusts ServerTLSConfig.
type TLSOption func(*tlsOptions)

type tlsOptions struct {
	requireClientCert bool
}

// RequireClientCert makes every connection present a client certificate
// verified against the client CA (mTLS only). Without it, a certificate is
// verified when given but not required, so callers may authenticate with a
// bearer token instead.
func RequireClientCert() TLSOption {
	return func(o *tlsOptions) { o.requireClientCert = true }
}

// ServerTLSConfig builds recoveryd's TLS configuration from PEM files: the
// server certificate chain and key, and optionally the CA that signs client
// certificates (mTLS).
//
// TLS 1.2 is the minimum and 1.3 is negotiated whenever the client supports
// it (Go prefers the highest common version). With clientCAFile "", no
// client certificate is requested and callers authenticate with bearer
// tokens. With a client CA, ClientAuth is tls.VerifyClientCertIfGiven: a
// certificate, if presented, must chain to that CA or the handshake fails,
// and a connection without one may still authenticate with a token; add
// RequireClientCert to make it tls.RequireAndVerifyClientCert, refusing at
// the handshake every connection without a valid client certificate.
//
// The files are read once; restart recoveryd to change them.
func ServerTLSConfig(certFile, keyFile, clientCAFile string, opts ...TLSOption) (*tls.Config, error) {
	var o tlsOptions
	for _, opt := range opts {
		opt(&o)
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate file and a key file")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.NoClientCert,
	}
	if clientCAFile == "" {
		if o.requireClientCert {
			return nil, errors.New("requiring client certificates needs a client CA file")
		}
		return cfg, nil
	}
	pool, err := loadCertPool(clientCAFile)
	if err != nil {
		return nil, err
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	if o.requireClientCert {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// loadCertPool reads a PEM file of CA certificates, refusing a file without
// any (an empty pool would silently reject every client certificate).
func loadCertPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file) //nolint:gosec // the path is operator configuration.
	if err != nil {
		return nil, fmt.Errorf("client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("client CA file %s: no PEM CERTIFICATE blocks found", file)
	}
	return pool, nil
}
