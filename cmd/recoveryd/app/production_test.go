package app

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/upstream"
)

// Lines of the production guard, as an operator reads them.
const (
	guardEmbedded     = "--environment production needs a real upstream: set --upstream-url and --upstream-token-file (the embedded sandbox is for development only)"
	guardHTTPUpstream = "--upstream-url uses plain http://: production requires https:// (http:// is for --environment development only)"
	guardHTTPJWKS     = "--jwks-url uses plain http://: production requires https:// (http:// is for --environment development only)"
	guardNoTokenFile  = "--upstream-token-file is required in production: a file holding the partner API token (or set RECOVERY_UPSTREAM_TOKEN_FILE)"
	guardNoHMACKey    = "--registry-hmac-key-file is required in production: a file of at least 32 random bytes (e.g. openssl rand -hex 32), the same for every replica; it keys the registry's idempotency hashes, so nothing derived from a plaintext is kept in clear"
	guardNoCallerAuth = "production needs caller authentication: set --caller-tokens-file (bearer tokens) and/or --client-ca with --tls-cert (mTLS); without it anyone who reaches --listen may assign keys and store backups"
	guardSandboxHost  = "--upstream-url " + upstream.SandboxBaseURL + " is the provider's sandbox (UAT) host: production must use the production host, e.g. " + upstream.ProductionBaseURL
	guardSandboxJWKS  = "--jwks-url " + upstream.SandboxJWKSURL + " is the provider's sandbox (UAT) JWKS: production keys must verify against " + upstream.ProductionJWKSURL
	guardForeignJWKS  = "--jwks-url https://keys.example/jwks.json is not the provider's production JWKS (" + upstream.ProductionJWKSURL + "): pin its signing keys with --verification-key-fingerprints (the SHA-256 of each), or use --verification-keys-file"
	// pinnedFingerprint stands in for the SHA-256 of a signing key.
	pinnedFingerprint     = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	guardGODEBUGPrefix    = "GODEBUG weakens Go's certificate or TLS checks ("
	guardGODEBUGSuffix    = "): production refuses x509 and TLS overrides; remove them (trust a private upstream CA with --upstream-ca-file instead)"
	guardPlaintextGRPC    = "production refuses plaintext gRPC: set --tls-cert and --tls-key, or --tls-terminated-by-proxy when a proxy or service mesh terminates TLS in front of --listen; otherwise bearer tokens and recovery material cross the network in clear"
	guardDatabasePassword = "--database-url carries a password: production reads it from a file, never a flag or variable; put the whole URL in --database-url-file, or use passfile=/path/pgpass in the URL (either readable by recoveryd only)"
	guardPGPASSWORD       = "PGPASSWORD is set: production reads the database password from a file, never a variable; put it in --database-url-file or a passfile="
	productionProxyURL    = "https://partner-proxy.internal.example"
	productionProxyJWKS   = "https://policies.internal.example/.well-known/jwks.json"
)

func guardSSLMode(mode string) string { return guardSSLModeOf("--database-url", mode) }

func guardSSLModeOf(flagName, mode string) string {
	return flagName + " has sslmode=" + mode + ": production requires sslmode=verify-full (the server's certificate and name verified, e.g. with sslrootcert=/path/ca.crt), or a unix socket (host=/var/run/postgresql)"
}

func guardGODEBUGUnlisted(settings string) string {
	return "GODEBUG sets " + settings + ": production allows only gctrace, http2client, http2server, madvdontneed (http2debug, for one, logs request headers, the partner token among them); remove the rest"
}

func guardSSLCert(name string) string {
	return name + " is set: it replaces the roots Go trusts for the upstream's and the JWKS's HTTPS; unset it (trust a private CA with --upstream-ca-file, besides the system roots)"
}

// TestProductionGuard: every refusal of --environment production, each
// its own line, all of them at once, and the configurations it lets start.
func TestProductionGuard(t *testing.T) {
	dir := t.TempDir()
	callers := writeCallersFile(t, filepath.Join(dir, "callers.json"), walletAPI)
	// secretFile writes a stand-in secret with exactly mode (no umask).
	secretFile := func(name string, content []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil { //nolint:gosec // name is one of this test's constants.
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tokenFile := secretFile("partner-token", []byte("not-a-real-token\n"), 0o600)
	hmacKeyFile := secretFile("registry-hmac.key", []byte(strings.Repeat("k", 64)+"\n"), 0o600)
	dbURLFile := secretFile("database-url", []byte("postgres://recoveryd:hunter2@db.example/recovery?sslmode=verify-full\n"), 0o600)
	dbURLFileNoTLS := secretFile("database-url-no-tls", []byte("postgres://recoveryd:hunter2@db.example/recovery\n"), 0o600)
	dbURLFileShared := secretFile("database-url-shared", []byte("postgres://recoveryd:hunter2@db.example/recovery?sslmode=verify-full\n"), 0o644)
	worldReadableToken := secretFile("world-readable-token", []byte("not-a-real-token\n"), 0o644)
	pki := newTestPKI(t, dir, "guard")
	server := pki.serverCert(t, "recoveryd")
	keyPEM, err := os.ReadFile(server.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ownerOnlyKey := secretFile("owner-only.key", keyPEM, 0o600)
	if err := os.Chmod(server.keyFile, 0o604); err != nil { //nolint:gosec // the refusal under test.
		t.Fatal(err)
	}
	valid := func(f func(*Config)) Config {
		c := DefaultConfig()
		c.Environment = EnvProduction
		c.UpstreamURL = productionProxyURL
		c.UpstreamTokenFile = tokenFile
		c.JWKSURL = productionProxyJWKS
		c.CallerTokensFile = callers
		c.TLSTerminatedByProxy = true
		c.VerificationKeyFingerprints = pinnedFingerprint
		c.RegistryHMACKeyFile = hmacKeyFile
		if f != nil {
			f(&c)
		}
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		env  map[string]string
		// want is every line of the error, in order; none means valid.
		want []string
	}{
		{name: "behind a private https proxy", cfg: valid(nil)},
		{name: "reconciler off", cfg: valid(func(c *Config) { c.ReconcileInterval = 0 }),
			want: []string{"--reconcile-interval 0 turns the reconciler off: production needs it (e.g. 30s), or customers whose assignment answer was lost stay stuck until an operator acts"}},
		{name: "the production host and its JWKS", cfg: valid(func(c *Config) {
			c.UpstreamURL, c.JWKSURL = upstream.ProductionBaseURL, upstream.ProductionJWKSURL
		})},
		{name: "the production host, keys pinned in a file (air-gapped)", cfg: valid(func(c *Config) {
			c.UpstreamURL, c.JWKSURL, c.VerificationKeysFile = upstream.ProductionBaseURL, "", "/etc/recoveryd/enclave-keys.pem"
		})},
		{name: "harmless GODEBUG settings", cfg: valid(nil), env: map[string]string{"GODEBUG": "http2client=0,gctrace=0"}},
		{name: "PostgreSQL verifying its server, password in a passfile", cfg: valid(func(c *Config) {
			c.DatabaseURL = "postgres://recoveryd@db.example:5432/recovery?sslmode=verify-full&sslrootcert=/etc/db/ca.crt&passfile=/etc/db/pgpass"
		})},
		{name: "PostgreSQL, sslmode from PGSSLMODE", cfg: valid(func(c *Config) { c.DatabaseURL = "postgres://recoveryd@db.example/recovery" }),
			env: map[string]string{"PGSSLMODE": "verify-full"}},
		{name: "PostgreSQL on a unix socket", cfg: valid(func(c *Config) { c.DatabaseURL = "postgres:///recovery?host=/var/run/postgresql" })},

		{name: "embedded sandbox", cfg: valid(func(c *Config) {
			c.UpstreamURL, c.UpstreamTokenFile, c.JWKSURL, c.VerificationKeyFingerprints = "", "", "", ""
		}),
			want: []string{guardEmbedded}},
		{name: "the sandbox host and its JWKS", cfg: valid(func(c *Config) {
			c.UpstreamURL, c.JWKSURL = upstream.SandboxBaseURL, upstream.SandboxJWKSURL
		}), want: []string{guardSandboxHost, guardSandboxJWKS}},
		{name: "the sandbox host spelled differently", cfg: valid(func(c *Config) {
			c.UpstreamURL = "https://SERVICE.UAT-KEYS.COINCOVER.COM./"
		}), want: []string{"--upstream-url https://SERVICE.UAT-KEYS.COINCOVER.COM./ is the provider's sandbox (UAT) host: production must use the production host, e.g. " + upstream.ProductionBaseURL}},
		{name: "http upstream", cfg: valid(func(c *Config) { c.UpstreamURL = "http://partner-proxy.internal.example" }),
			want: []string{guardHTTPUpstream}},
		{name: "http JWKS", cfg: valid(func(c *Config) { c.JWKSURL = "http://policies.internal.example/jwks.json" }),
			want: []string{guardHTTPJWKS}},
		{name: "no upstream token file", cfg: valid(func(c *Config) { c.UpstreamTokenFile = "" }),
			want: []string{guardNoTokenFile}},
		{name: "no caller authentication", cfg: valid(func(c *Config) { c.CallerTokensFile = "" }),
			want: []string{guardNoCallerAuth}},
		{name: "no registry HMAC key file", cfg: valid(func(c *Config) { c.RegistryHMACKeyFile = "" }),
			want: []string{guardNoHMACKey}},
		{name: "plaintext gRPC, no proxy said to terminate TLS", cfg: valid(func(c *Config) { c.TLSTerminatedByProxy = false }),
			want: []string{guardPlaintextGRPC}},
		{name: "TLS served by recoveryd itself", cfg: valid(func(c *Config) {
			c.TLSTerminatedByProxy, c.TLSCert, c.TLSKey = false, server.certFile, ownerOnlyKey
		})},
		{name: "the production host with another JWKS", cfg: valid(func(c *Config) {
			c.UpstreamURL, c.JWKSURL, c.VerificationKeyFingerprints = upstream.ProductionBaseURL, "https://keys.example/jwks.json", ""
		}), want: []string{guardForeignJWKS}},
		{name: "a proxy's JWKS without pinned keys", cfg: valid(func(c *Config) {
			c.JWKSURL, c.VerificationKeyFingerprints = "https://keys.example/jwks.json", ""
		}), want: []string{guardForeignJWKS}},
		{name: "the production JWKS needs no pins", cfg: valid(func(c *Config) {
			c.JWKSURL, c.VerificationKeyFingerprints = upstream.ProductionJWKSURL, ""
		})},
		{name: "GODEBUG x509 and TLS overrides", cfg: valid(nil),
			env:  map[string]string{"GODEBUG": "http2client=0, x509negativeserial=1,tlsrsakex=1"},
			want: []string{guardGODEBUGPrefix + "GODEBUG x509negativeserial=1, GODEBUG tlsrsakex=1" + guardGODEBUGSuffix}},
		{name: "PostgreSQL without sslmode", cfg: valid(func(c *Config) { c.DatabaseURL = "postgres://recoveryd@db.example/recovery" }),
			want: []string{guardSSLMode("prefer (the default)")}},
		{name: "PostgreSQL with sslmode=require", cfg: valid(func(c *Config) { c.DatabaseURL = "postgres://recoveryd@db.example/recovery?sslmode=require" }),
			want: []string{guardSSLMode("require")}},
		{name: "PostgreSQL on a socket and a network host", cfg: valid(func(c *Config) {
			c.DatabaseURL = "postgres:///recovery?host=/var/run/postgresql&host=db.example&sslmode=verify-ca"
		}), want: []string{guardSSLMode("verify-ca")}},
		{name: "PostgreSQL password in the URL", cfg: valid(func(c *Config) {
			c.DatabaseURL = "postgres://recoveryd:hunter2@db.example/recovery?sslmode=verify-full"
		}), want: []string{guardDatabasePassword}},
		{name: "PostgreSQL password as a parameter", cfg: valid(func(c *Config) {
			c.DatabaseURL = "postgres://recoveryd@db.example/recovery?sslmode=verify-full&password=hunter2"
		}), want: []string{guardDatabasePassword}},
		{name: "PostgreSQL URL with its password in --database-url-file", cfg: valid(func(c *Config) { c.DatabaseURLFile = dbURLFile })},
		{name: "PostgreSQL URL file without sslmode", cfg: valid(func(c *Config) { c.DatabaseURLFile = dbURLFileNoTLS }),
			want: []string{guardSSLModeOf("--database-url-file", "prefer (the default)")}},
		{name: "PostgreSQL URL file others can read", cfg: valid(func(c *Config) { c.DatabaseURLFile = dbURLFileShared }), want: []string{
			"--database-url-file " + dbURLFileShared + " has permissions 0644, which let group or others access a secret: make it readable by the service user only (chmod 600), or by its group only when root owns it (chmod 440, as a Kubernetes secret volume with an fsGroup mounts it)"}},
		{name: "PostgreSQL password in PGPASSWORD", cfg: valid(func(c *Config) { c.DatabaseURL = "postgres://recoveryd@db.example/recovery?sslmode=verify-full" }),
			env: map[string]string{"PGPASSWORD": "hunter2"}, want: []string{guardPGPASSWORD}},
		{name: "credentials in the upstream and JWKS URLs", cfg: valid(func(c *Config) {
			c.UpstreamURL, c.JWKSURL = "https://partner:hunter2@service.uat-keys.coincover.com", "https://partner:hunter2@policies.internal.example/jwks.json"
		}), want: []string{
			"--upstream-url carries user info (user:password@): remove it; recoveryd authenticates to the upstream only with --upstream-token-file, and a URL is logged",
			"--jwks-url carries user info (user:password@): remove it; recoveryd authenticates to the upstream only with --upstream-token-file, and a URL is logged",
			"--upstream-url https://service.uat-keys.coincover.com is the provider's sandbox (UAT) host: production must use the production host, e.g. " + upstream.ProductionBaseURL,
		}},
		{name: "token file others can read", cfg: valid(func(c *Config) { c.UpstreamTokenFile = worldReadableToken }), want: []string{
			"--upstream-token-file " + worldReadableToken + " has permissions 0644, which let group or others access a secret: make it readable by the service user only (chmod 600), or by its group only when root owns it (chmod 440, as a Kubernetes secret volume with an fsGroup mounts it)"}},
		{name: "missing token file", cfg: valid(func(c *Config) { c.UpstreamTokenFile = filepath.Join(dir, "missing") }), want: []string{
			"--upstream-token-file " + filepath.Join(dir, "missing") + " cannot be opened: open: no such file or directory"}},
		{name: "TLS key others can read", cfg: valid(func(c *Config) { c.TLSCert, c.TLSKey = server.certFile, server.keyFile }), want: []string{
			"--tls-key " + server.keyFile + " has permissions 0604, which let group or others access a secret: make it readable by the service user only (chmod 600), or by its group only when root owns it (chmod 440, as a Kubernetes secret volume with an fsGroup mounts it)"}},
		{name: "GODEBUG http2debug logs headers", cfg: valid(nil), env: map[string]string{"GODEBUG": "gctrace=1,http2debug=2"},
			want: []string{guardGODEBUGUnlisted("http2debug=2")}},
		{name: "GODEBUG settings outside the allowlist", cfg: valid(nil), env: map[string]string{"GODEBUG": "panicnil=1, tlsrsakex=1,netdns=go+2"},
			want: []string{guardGODEBUGPrefix + "GODEBUG tlsrsakex=1" + guardGODEBUGSuffix, guardGODEBUGUnlisted("panicnil=1, netdns=go+2")}},
		{name: "SSL_CERT_FILE and SSL_CERT_DIR", cfg: valid(nil), env: map[string]string{"SSL_CERT_FILE": "/tmp/roots.pem", "SSL_CERT_DIR": "/tmp/roots"},
			want: []string{guardSSLCert("SSL_CERT_FILE"), guardSSLCert("SSL_CERT_DIR")}},
		{name: "every problem at once", cfg: valid(func(c *Config) {
			c.UpstreamURL, c.JWKSURL = "http://service.uat-keys.coincover.com", "http://policies.uat-keys.coincover.com/.well-known/jwks.json"
			c.UpstreamTokenFile, c.CallerTokensFile = "", ""
		}), env: map[string]string{"GODEBUG": "x509usefallbackroots=1"}, want: []string{
			"--upstream-url http://service.uat-keys.coincover.com is the provider's sandbox (UAT) host: production must use the production host, e.g. " + upstream.ProductionBaseURL,
			guardHTTPUpstream,
			guardNoTokenFile,
			guardHTTPJWKS,
			"--jwks-url http://policies.uat-keys.coincover.com/.well-known/jwks.json is the provider's sandbox (UAT) JWKS: production keys must verify against " + upstream.ProductionJWKSURL,
			guardNoCallerAuth,
			guardGODEBUGPrefix + "GODEBUG x509usefallbackroots=1" + guardGODEBUGSuffix,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.validate(envMap(tt.env))
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Validate() lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Validate() echoes a password: %v", err)
			}
		})
	}
}

// TestProductionStarts runs a fully valid production configuration: an
// https upstream whose certificate only --upstream-ca-file vouches for, a
// callers file. It serves, prints no banner, keeps health public and
// reflection for authenticated callers.
func TestProductionStarts(t *testing.T) {
	// Run reads the process environment; the machine running the tests may
	// set these, which production refuses (TestProductionGuard).
	for _, name := range []string{"SSL_CERT_FILE", "SSL_CERT_DIR", "GODEBUG"} {
		t.Setenv(name, "")
	}
	log, logs := newTestLogger(t)
	up := startUpstreamWith(t, upstreamOptions{dir: t.TempDir(), log: log, tls: true})
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.Environment = EnvProduction
	cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI)
	cfg.TLSTerminatedByProxy = true
	cfg.RegistryHMACKeyFile = writeRegistryHMACKey(t)
	cfg.VerificationKeyFingerprints = strings.Join(signingKeyFingerprints(t, up), ",")
	if !strings.HasPrefix(cfg.UpstreamURL, "https://") || cfg.UpstreamCAFile == "" {
		t.Fatalf("want an https upstream trusted through --upstream-ca-file, got %s", cfg)
	}
	var banner bytes.Buffer
	srv := startReady(t, cfg, log, Options{Stderr: &banner})
	ctx := testCtx(t)

	if banner.Len() != 0 {
		t.Errorf("production printed a banner:\n%s", banner.String())
	}
	// The upstream's JWKS was fetched over verified TLS (readiness), and an
	// assignment goes through it.
	key, err := srv.client.AssignKey(withToken(ctx, walletAPI.token), assignKeyRequest("prod-user", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_COLD))
	if err != nil {
		t.Fatalf("AssignKey in production: %v", err)
	}
	if got := up.Inspect.Keys(t); len(got) != 1 || got[0].KeyID != key.GetKey().GetKeyId() {
		t.Errorf("upstream keys = %+v, want the one assigned", got)
	}

	if _, err := srv.health.Check(ctx, &healthpb.HealthCheckRequest{Service: serviceName}); err != nil {
		t.Errorf("health without a token in production: %v", err)
	}
	_, err = listServices(ctx, srv.conn)
	wantStatus(t, err, codes.Unauthenticated, "CALLER_TOKEN_MISSING")
	services, err := listServices(withToken(ctx, walletAPI.token), srv.conn)
	if err != nil || !slices.Contains(services, serviceName) {
		t.Errorf("reflection as an authenticated caller = %q, %v", services, err)
	}
	if !strings.Contains(logs.String(), `"msg":"serving plaintext gRPC behind a proxy or mesh that terminates TLS`) {
		t.Error("production behind a TLS-terminating proxy did not log that it serves plaintext gRPC")
	}
}

// TestUpstreamCertificateIsVerified: without --upstream-ca-file, the
// upstream's self-signed certificate is refused; nothing skips verification.
func TestUpstreamCertificateIsVerified(t *testing.T) {
	log, logs := newTestLogger(t)
	up := startUpstreamWith(t, upstreamOptions{dir: t.TempDir(), log: log, tls: true})
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.UpstreamCAFile = ""
	srv := startServer(t, cfg, log, Options{})
	ctx := testCtx(t)

	_, err := srv.client.AssignKey(ctx, assignKeyRequest("unverified", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	wantStatus(t, err, codes.Unavailable, "VERIFICATION_KEYS_UNAVAILABLE")
	if !strings.Contains(logs.String(), "x509: certificate signed by unknown authority") {
		t.Error("the log does not say the upstream's certificate was refused")
	}
	if keys := up.Inspect.Keys(t); len(keys) != 0 {
		t.Errorf("an unverified upstream assigned keys: %+v", keys)
	}
}

// TestDevelopmentBanner: the banner names each unsafe choice of a
// development configuration, and only those.
func TestDevelopmentBanner(t *testing.T) {
	const (
		embedded   = "EMBEDDED SANDBOX"
		noAuth     = "NO CALLER AUTHENTICATION"
		reflection = "PUBLIC REFLECTION"
		plaintext  = "PLAINTEXT gRPC"
		httpUp     = "HTTP UPSTREAM"
		httpJWKS   = "HTTP JWKS"
		weakTLS    = "WEAKENED TLS: GODEBUG tls10server=1"
	)
	all := []string{embedded, noAuth, reflection, plaintext, httpUp, httpJWKS, weakTLS}
	secured := func(c *Config) {
		c.UpstreamURL, c.UpstreamTokenFile, c.JWKSURL = productionProxyURL, "/run/secrets/token", productionProxyJWKS
		c.CallerTokensFile, c.TLSCert, c.TLSKey = "/etc/recoveryd/callers.json", "/etc/recoveryd/tls.crt", "/etc/recoveryd/tls.key"
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		env    map[string]string
		want   []string
	}{
		{"defaults", func(*Config) {}, nil, []string{embedded, noAuth, reflection, plaintext}},
		{"plain http upstream", func(c *Config) {
			c.UpstreamURL, c.UpstreamTokenFile, c.JWKSURL = "http://127.0.0.1:8080", "/tmp/token", "http://127.0.0.1:8080/.well-known/jwks.json"
		}, nil, []string{noAuth, reflection, plaintext, httpUp, httpJWKS}},
		{"as secured as development gets", secured, nil, []string{reflection}},
		{"weakened TLS", secured, map[string]string{"GODEBUG": "tls10server=1"}, []string{reflection, weakTLS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			banner := developmentBanner(cfg, envMap(tt.env))
			if !strings.Contains(banner, "DEVELOPMENT mode") || strings.Count(banner, "\n") < 5 {
				t.Errorf("banner is not a loud multi-line warning:\n%s", banner)
			}
			for _, item := range all {
				if got, want := strings.Contains(banner, item), slices.Contains(tt.want, item); got != want {
					t.Errorf("banner mentions %q: %t, want %t\n%s", item, got, want, banner)
				}
			}
			cfg.Environment = EnvProduction
			if b := developmentBanner(cfg, envMap(tt.env)); b != "" {
				t.Errorf("production banner = %q, want none", b)
			}
		})
	}
}
