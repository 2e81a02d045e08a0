package app

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"google.golang.org/grpc"

	"github.com/walletprovider/recoveryservice/service/auth"
)

// securityProblems checks the caller-authentication and TLS flags: the
// pairs that only work together, and the files they name, which must exist,
// be readable and parse. A callers file's own errors are reported as
// service/auth words them (file, entry, field, problem).
func (c Config) securityProblems() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		bad("--tls-cert is set without --tls-key: set both (the certificate chain and its private key), or neither to serve plaintext gRPC")
	case c.TLSKey != "" && c.TLSCert == "":
		bad("--tls-key is set without --tls-cert: set both (the certificate chain and its private key), or neither to serve plaintext gRPC")
	case c.TLSCert != "":
		unreadable := false
		for _, err := range []error{checkReadable("--tls-cert", c.TLSCert), checkReadable("--tls-key", c.TLSKey)} {
			if err != nil {
				errs, unreadable = append(errs, err), true
			}
		}
		if !unreadable {
			if _, err := auth.ServerTLSConfig(c.TLSCert, c.TLSKey, ""); err != nil {
				bad("--tls-cert and --tls-key do not make a usable TLS identity: %v", err)
			}
		}
	}

	if c.ClientCA != "" {
		if c.TLSCert == "" || c.TLSKey == "" {
			bad("--client-ca needs --tls-cert and --tls-key: client certificates are only presented over TLS")
		}
		if c.CallerTokensFile == "" {
			bad("--client-ca needs --caller-tokens-file: a client certificate authenticates the caller of that file whose name it carries (URI or DNS SAN)")
		}
		if _, err := loadCACertificates("--client-ca", c.ClientCA); err != nil {
			errs = append(errs, err)
		}
	}

	if c.ClientTrustDomain != "" {
		if c.ClientCA == "" {
			bad("--client-trust-domain needs --client-ca: it says which client certificates' SPIFFE IDs name callers")
		}
		if _, err := auth.ParseTrustDomain(c.ClientTrustDomain); err != nil {
			bad("--client-trust-domain: %v", err)
		}
	}

	if c.CallerTokensFile != "" {
		if _, err := auth.LoadCallersFile(c.CallerTokensFile); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// checkReadable is nil when path names a regular file this process can
// open, else an error naming the flag and what is wrong.
func checkReadable(flagName, path string) error {
	f, err := os.Open(path) //nolint:gosec // the path is operator configuration.
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s does not exist", flagName, path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s %s is not readable by this user (permission denied)", flagName, path)
	case err != nil:
		return fmt.Errorf("%s %s cannot be opened: %w", flagName, path, errors.Unwrap(err))
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s %s cannot be read: %w", flagName, path, errors.Unwrap(err))
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s %s is not a regular file", flagName, path)
	}
	return nil
}

// maxCAFileBytes bounds a CA bundle read from disk: the system bundle is
// about 200 KiB.
const maxCAFileBytes = 4 << 20

// loadCACertificates reads a PEM file of CA certificates, refusing one that
// holds none (an empty pool trusts nothing, silently) or a block that does
// not parse.
func loadCACertificates(flagName, path string) ([]*x509.Certificate, error) {
	if err := checkReadable(flagName, path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path) //nolint:gosec // the path is operator configuration.
	if err != nil {
		return nil, fmt.Errorf("%s %s cannot be read: %w", flagName, path, errors.Unwrap(err))
	}
	if len(data) > maxCAFileBytes {
		return nil, fmt.Errorf("%s %s is larger than %d bytes: it should hold PEM CA certificates only", flagName, path, maxCAFileBytes)
	}
	var certs []*x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s %s: certificate %d does not parse: %w", flagName, path, len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s %s holds no PEM CERTIFICATE block", flagName, path)
	}
	return certs, nil
}

// newAuthenticator builds caller authentication from cfg: nil (off) without
// a callers file. Its callers file is reloaded on every SIGHUP until ctx
// ends or stop is called; stop waits for the watcher to exit. onReload, when
// set, is told each reload's outcome.
func newAuthenticator(ctx context.Context, cfg Config, log *slog.Logger, onReload func(error)) (_ *auth.Authenticator, stop func(), _ error) {
	if cfg.CallerTokensFile == "" {
		return nil, func() {}, nil
	}
	a, err := auth.New(auth.Config{
		CallersFile:       cfg.CallerTokensFile,
		ClientTrustDomain: cfg.ClientTrustDomain,
		// Operators browse a development server with grpcurl; in production
		// reflection tells only authenticated callers what the API holds.
		PublicReflection: cfg.Environment == EnvDevelopment,
		Logger:           log,
		OnReload:         onReload,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("loading --caller-tokens-file: %w", err)
	}
	stop = a.WatchSIGHUP(ctx, log)
	log.Info("caller authentication enforced", "callers_file", cfg.CallerTokensFile, "callers", a.Callers().Len(),
		"mtls", cfg.ClientCA != "", "public_reflection", cfg.Environment == EnvDevelopment)
	return a, stop, nil
}

// serverSecurity is how the gRPC server authenticates callers. Its zero
// value is no caller authentication over plaintext gRPC (development).
type serverSecurity struct {
	// authn authenticates callers in the chain's auth position; nil is off.
	authn *auth.Authenticator
	// creds is the TLS (or mTLS) server option; nil serves plaintext.
	creds grpc.ServerOption
	// audit records every call, the refused included (the chain's audit
	// position and the tap's wrapper); nil records nothing (tests of other
	// concerns).
	audit *auditor
}

// secure builds the server's caller authentication and TLS from cfg. The
// callers file's SIGHUP watcher is released with the app.
//
// NOTE: the watcher outlives run's ctx until the app closes: calls still
// draining after SIGTERM are authenticated, and a SIGHUP meanwhile must
// reload, not kill the process (its default once nobody watches).
func (a *app) secure(ctx context.Context, cfg Config, opts Options) (serverSecurity, error) {
	authn, stop, err := newAuthenticator(context.WithoutCancel(ctx), cfg, a.log.With("component", "auth"), opts.OnCallersReload)
	if err != nil {
		return serverSecurity{}, err
	}
	a.closers = append(a.closers, func() error { stop(); return nil })
	creds, err := serverCredentials(cfg)
	if err != nil {
		return serverSecurity{}, err
	}
	return serverSecurity{authn: authn, creds: creds}, nil
}
