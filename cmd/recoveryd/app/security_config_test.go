package app

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/service/auth"
)

// TestValidateSecurityFlags: the TLS and caller flags that only work
// together, and the files they name, each problem on its own line; a
// callers file's errors are printed exactly as service/auth words them.
func TestValidateSecurityFlags(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir, "flags")
	server := pki.serverCert(t, "server")
	other := pki.serverCert(t, "other")
	callers := writeCallersFile(t, filepath.Join(dir, "callers.json"), walletAPI)
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	worldReadable := filepath.Join(dir, "world-readable.json")
	if err := os.WriteFile(worldReadable, []byte(`{"callers": []}`), 0o644); err != nil { //nolint:gosec // the refusal under test.
		t.Fatal(err)
	}
	badEntry := filepath.Join(dir, "bad-entry.json")
	if err := os.WriteFile(badEntry, []byte(`{"callers": [{"name": "x", "token_sha256": "ABC", "organisations": ["*"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	loadErr := func(path string) string {
		_, err := auth.LoadCallersFile(path)
		if err == nil {
			t.Fatalf("%s loads", path)
		}
		return err.Error()
	}

	base := func(f func(*Config)) Config {
		c := DefaultConfig()
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // every line, in order; none means valid
	}{
		{name: "TLS, mTLS and callers", cfg: base(func(c *Config) {
			c.TLSCert, c.TLSKey, c.ClientCA, c.CallerTokensFile = server.certFile, server.keyFile, pki.caFile, callers
		})},
		{name: "TLS without callers", cfg: base(func(c *Config) { c.TLSCert, c.TLSKey = server.certFile, server.keyFile })},
		{name: "callers over plaintext", cfg: base(func(c *Config) { c.CallerTokensFile = callers })},
		{name: "every interface with callers", cfg: base(func(c *Config) { c.Listen, c.CallerTokensFile = "0.0.0.0:50051", callers })},
		{name: "loopback names and addresses", cfg: base(func(c *Config) { c.Listen, c.AdminListen = "localhost:50051", "[::1]:9464" })},
		{name: "admin on every interface, said so", cfg: base(func(c *Config) { c.AdminListen, c.AdminListenPublic = "0.0.0.0:9464", true })},

		{name: "every interface without authentication", cfg: base(func(c *Config) { c.Listen = "0.0.0.0:50051" }), want: []string{
			"--listen 0.0.0.0:50051 is reachable beyond this host but callers need not authenticate: set --caller-tokens-file (and/or --client-ca), or listen on loopback (e.g. 127.0.0.1:50051)"}},
		{name: "empty host is every interface", cfg: base(func(c *Config) { c.Listen = ":50051" }), want: []string{
			"--listen :50051 is reachable beyond this host but callers need not authenticate: set --caller-tokens-file (and/or --client-ca), or listen on loopback (e.g. 127.0.0.1:50051)"}},
		{name: "a host name may resolve anywhere", cfg: base(func(c *Config) { c.Listen = "recoveryd.internal:50051" }), want: []string{
			"--listen recoveryd.internal:50051 is reachable beyond this host but callers need not authenticate: set --caller-tokens-file (and/or --client-ca), or listen on loopback (e.g. 127.0.0.1:50051)"}},
		{name: "profiles on the loopback admin server", cfg: base(func(c *Config) { c.AdminPprof = true })},
		{name: "profiles without the admin server", cfg: base(func(c *Config) { c.AdminListen, c.AdminPprof = "", true }), want: []string{
			"--admin-pprof is set but the admin server is off (--admin-listen is empty): give a loopback --admin-listen (e.g. 127.0.0.1:9464) to serve /debug/pprof/"}},
		{name: "profiles beyond loopback, even said public", cfg: base(func(c *Config) { c.AdminListen, c.AdminListenPublic, c.AdminPprof = "0.0.0.0:9464", true, true }), want: []string{
			"--admin-pprof serves runtime profiles, which anyone reaching the port could take at the cost of CPU: use it only with a loopback --admin-listen (e.g. 127.0.0.1:9464), not 0.0.0.0:9464"}},
		{name: "admin on every interface", cfg: base(func(c *Config) { c.AdminListen, c.CallerTokensFile = "[::]:9464", callers }), want: []string{
			"--admin-listen [::]:9464 is reachable beyond this host and /metrics, /healthz and /readyz need no credentials: listen on loopback (e.g. 127.0.0.1:9464), or set --admin-listen-public when a network policy decides who reaches it"}},

		{name: "certificate without key", cfg: base(func(c *Config) { c.TLSCert = server.certFile }), want: []string{
			"--tls-cert is set without --tls-key: set both (the certificate chain and its private key), or neither to serve plaintext gRPC"}},
		{name: "key without certificate", cfg: base(func(c *Config) { c.TLSKey = server.keyFile }), want: []string{
			"--tls-key is set without --tls-cert: set both (the certificate chain and its private key), or neither to serve plaintext gRPC"}},
		{name: "missing certificate and key", cfg: base(func(c *Config) { c.TLSCert, c.TLSKey = missing, dir }), want: []string{
			"--tls-cert " + missing + " does not exist",
			"--tls-key " + dir + " is not a regular file"}},
		{name: "key of another certificate", cfg: base(func(c *Config) { c.TLSCert, c.TLSKey = server.certFile, other.keyFile }), want: []string{
			"--tls-cert and --tls-key do not make a usable TLS identity: TLS certificate " + server.certFile + " with key " + other.keyFile + ": tls: private key does not match public key"}},
		{name: "client CA alone", cfg: base(func(c *Config) { c.ClientCA = pki.caFile }), want: []string{
			"--client-ca needs --tls-cert and --tls-key: client certificates are only presented over TLS",
			"--client-ca needs --caller-tokens-file: a client certificate authenticates the caller of that file whose name it carries (URI or DNS SAN)"}},
		{name: "mTLS with a trust domain", cfg: base(func(c *Config) {
			c.TLSCert, c.TLSKey, c.ClientCA, c.CallerTokensFile, c.ClientTrustDomain = server.certFile, server.keyFile, pki.caFile, callers, "prod.example"
		})},
		{name: "trust domain without a client CA", cfg: base(func(c *Config) { c.ClientTrustDomain = "prod.example" }), want: []string{
			"--client-trust-domain needs --client-ca: it says which client certificates' SPIFFE IDs name callers"}},
		{name: "trust domain that is a SPIFFE ID", cfg: base(func(c *Config) {
			c.TLSCert, c.TLSKey, c.ClientCA, c.CallerTokensFile, c.ClientTrustDomain = server.certFile, server.keyFile, pki.caFile, callers, "spiffe://prod.example/wallet-api"
		}), want: []string{`--client-trust-domain: trust domain "spiffe://prod.example/wallet-api" has a path: give only the trust domain (e.g. prod.example), whose SPIFFE IDs' paths name callers`}},
		{name: "client CA that is not PEM", cfg: base(func(c *Config) {
			c.TLSCert, c.TLSKey, c.ClientCA, c.CallerTokensFile = server.certFile, server.keyFile, notPEM, callers
		}), want: []string{"--client-ca " + notPEM + " holds no PEM CERTIFICATE block"}},
		{name: "missing callers file", cfg: base(func(c *Config) { c.CallerTokensFile = missing }), want: []string{loadErr(missing)}},
		{name: "world-readable callers file", cfg: base(func(c *Config) { c.CallerTokensFile = worldReadable }), want: []string{loadErr(worldReadable)}},
		{name: "callers file with a bad entry", cfg: base(func(c *Config) { c.CallerTokensFile = badEntry }), want: []string{loadErr(badEntry)}},
		{name: "upstream CA without an upstream", cfg: base(func(c *Config) { c.UpstreamCAFile = pki.caFile }), want: []string{
			"--upstream-ca-file needs --upstream-url: the embedded sandbox is reached over loopback http://"}},
		{name: "upstream CA that is not PEM", cfg: base(func(c *Config) {
			c.UpstreamURL, c.UpstreamTokenFile, c.JWKSURL, c.UpstreamCAFile = "https://upstream.example", "/run/secrets/token", "https://upstream.example/jwks.json", notPEM
		}), want: []string{"--upstream-ca-file " + notPEM + " holds no PEM CERTIFICATE block"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.validate(envMap(nil))
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Validate() lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
