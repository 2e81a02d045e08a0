package app

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/upstream"
)

// Environments recoveryd runs in.
const (
	// envDevelopment allows plain-http upstreams and the embedded sandbox.
	EnvDevelopment = "development"
	// envProduction refuses both.
	EnvProduction = "production"
)

// Configuration defaults: `go run ./cmd/recoveryd` with none of the flags set
// is a working development server.
const (
	defaultListen      = "127.0.0.1:50051"
	defaultAdminListen = "127.0.0.1:9464" // 9464: the usual port of an OTel Prometheus exporter
	defaultDataDir     = "./recoveryd-data"
	defaultEnvironment = EnvDevelopment
	// defaultMaxFileBytes is the upstream's secure/file limit (10 MiB): a
	// larger file would only be refused after it had been streamed.
	defaultMaxFileBytes int64 = 10 << 20
	// defaultMaxConcurrentFiles bounds the SecureFile streams in flight:
	// each holds an upstream upload open for up to its 10-minute timeout, so
	// without a cap a burst of slow uploads holds every connection and
	// goroutine the server can spare.
	defaultMaxConcurrentFiles = 64
	// defaultMaxActiveCalls is off: measured on 2 cores (docs/benchmarks.md),
	// a gate of 64 made another caller's SecureData under a flood about a
	// quarter faster but cut SecureData at c=256 against a 50 ms upstream
	// by a third. suggestedMaxActiveCalls is the value to start from where
	// several callers share a replica.
	defaultMaxActiveCalls   = 0
	suggestedMaxActiveCalls = 64
	// defaultMaxConnections caps the client connections served at once:
	// each idle HTTP/2 connection holds buffers and goroutines, and without
	// a cap thousands of them were all held. Connections beyond it wait in
	// the kernel's accept queue until one closes.
	defaultMaxConnections = 1000
	// defaultShutdownTimeout is how long in-flight calls (a 10 MiB upload on
	// a slow link included) get to finish after SIGTERM before they are cut.
	defaultShutdownTimeout = 30 * time.Second
	// defaultUpstreamCallTimeout bounds one AssignKey or SecureData call to
	// the upstream, retries included (the adapter's default).
	defaultUpstreamCallTimeout = upstream.DefaultCallTimeout
	// maxUpstreamCallTimeout is the longest --upstream-call-timeout allowed:
	// a reservation's lease is twice it, and a customer waits that long
	// behind a crashed replica's reservation.
	maxUpstreamCallTimeout = 5 * time.Minute
	// defaultStreamIdleTimeout is how long a SecureFile stream may pause
	// between two messages (service.DefaultStreamIdleTimeout).
	defaultStreamIdleTimeout = service.DefaultStreamIdleTimeout
	// maxStreamIdleTimeout is the longest --stream-idle-timeout allowed:
	// the upstream file timeout bounds the whole upload anyway.
	maxStreamIdleTimeout = upstream.DefaultFileTimeout
	// defaultReconcileInterval is how often the reconciler looks for
	// unknown assignments.
	defaultReconcileInterval = 30 * time.Second
	// minReconcileInterval and maxReconcileInterval bound
	// --reconcile-interval (besides 0, off): shorter only loads the
	// upstream, longer leaves customers waiting.
	minReconcileInterval = time.Second
	maxReconcileInterval = time.Hour
	// minAuditRetention is the shortest --audit-retention: a prune runs
	// hourly, and an audit trail kept for less is hardly one.
	minAuditRetention = 24 * time.Hour
	// redacted stands in for secrets wherever a Config is printed.
	redacted = "[redacted]"
)

// Config is everything recoveryd can be told. It holds no secret: the
// upstream token stays in its file until the upstream client is built, and a
// database password is redacted whenever the Config is printed.
type Config struct {
	// Listen is the gRPC listen address (host:port).
	Listen string
	// AdminListen is the host:port of the admin HTTP server (/metrics,
	// /healthz, /readyz); "" disables it.
	AdminListen string
	// AdminListenPublic allows a non-loopback AdminListen. The admin
	// endpoints need no credentials, so serving them beyond the host is a
	// decision an operator states (a network policy limits who reaches it).
	AdminListenPublic bool
	// AdminPprof serves Go's runtime profiles under /debug/pprof/ on the
	// admin server, for profiling under load; only on a loopback
	// AdminListen, since taking a profile costs CPU.
	AdminPprof bool
	// DataDir holds the SQLite registry and the embedded sandbox's state.
	DataDir string
	// Environment is envDevelopment or envProduction.
	Environment string
	// LogLevel is the minimum level logged.
	LogLevel slog.Level
	// UpstreamURL is the Partner Key Service base URL; "" runs the embedded
	// sandbox.
	UpstreamURL string
	// UpstreamTokenFile holds the partner bearer token (required with
	// UpstreamURL).
	UpstreamTokenFile string
	// JWKSURL is where the enclave's verification keys are published.
	JWKSURL string
	// VerificationKeysFile is a JWKS or PEM file of verification keys, for
	// deployments that cannot fetch the JWKS (instead of JWKSURL).
	VerificationKeysFile string
	// VerificationKeyFingerprints pins the enclave signing keys: a
	// comma-separated list of SHA-256 fingerprints (of each key's DER
	// SubjectPublicKeyInfo); a key of the JWKS or key file not listed is never
	// used. "" trusts every key served.
	VerificationKeyFingerprints string
	// DatabaseURL selects PostgreSQL (postgres://…); "" means SQLite at
	// <DataDir>/registry.db.
	DatabaseURL string
	// DatabaseURLFile is a file holding the PostgreSQL URL, password
	// included, instead of DatabaseURL: a secret comes only from a file.
	DatabaseURLFile string
	// MaxFileBytes caps one SecureFile upload.
	MaxFileBytes int64
	// ShutdownTimeout bounds the graceful part of shutdown.
	ShutdownTimeout time.Duration
	// UpstreamCallTimeout bounds one AssignKey or SecureData call to the
	// upstream, retries included; reservations last twice as long.
	UpstreamCallTimeout time.Duration
	// RateLimit is each caller's default token-bucket refill, in calls per
	// second (without caller authentication: each peer address's); 0 turns
	// rate limiting off. The callers file may override it per caller.
	RateLimit float64
	// RateBurst is the default bucket size: calls a caller may make at once
	// after a quiet spell. At least 1 when RateLimit is set.
	RateBurst int
	// MaxConcurrentCalls caps each caller's calls in flight (without caller
	// authentication: each peer host's); 0 is off. The callers file may
	// override it per caller.
	MaxConcurrentCalls int
	// MaxConcurrentFiles caps the SecureFile streams in flight, all callers
	// together; 0 is off.
	MaxConcurrentFiles int
	// MaxActiveCalls caps the unary calls being worked on at once, all
	// callers together; the others wait, each caller's in its own queue,
	// and are admitted the callers in turn. 0 is off.
	MaxActiveCalls int
	// MaxConnections caps the gRPC client connections served at once; a
	// connection beyond it is accepted only when another closes.
	MaxConnections int
	// StreamIdleTimeout is how long a SecureFile stream may wait between
	// two messages before it is aborted, nothing stored.
	StreamIdleTimeout time.Duration
	// ReconcileInterval is how often the reconciler re-sends the
	// assignments whose outcome is unknown (and the first step of its
	// backoff per pair); 0 turns it off, which only development allows.
	ReconcileInterval time.Duration

	// CallerTokensFile is the callers file (see service/auth): who may call
	// and for which organisations. "" turns caller authentication off, which
	// only development allows.
	CallerTokensFile string
	// TLSCert and TLSKey are the PEM certificate chain and private key of the
	// gRPC listener; both or neither (plaintext gRPC).
	TLSCert string
	TLSKey  string
	// TLSTerminatedByProxy states that a proxy or service mesh terminates
	// TLS in front of a plaintext --listen; production refuses plaintext
	// gRPC without it.
	TLSTerminatedByProxy bool
	// ClientCA is a PEM file of the CAs that sign client certificates (mTLS);
	// it needs TLSCert and CallerTokensFile, whose names the certificates
	// must carry.
	ClientCA string
	// ClientTrustDomain is the SPIFFE trust domain whose IDs name callers by
	// their exact path (spiffe://<domain>/<caller name>); "" matches client
	// certificates by whole URI SAN or DNS SAN only. Needs ClientCA.
	ClientTrustDomain string
	// UpstreamCAFile is a PEM file of CA certificates trusted, besides the
	// system roots, for the upstream's and the JWKS's HTTPS (a private CA).
	UpstreamCAFile string
	// AuditRetention is the age past which audit records are exported
	// (JSON lines under <DataDir>/audit-export) and then pruned; 0 keeps
	// them all.
	AuditRetention time.Duration
	// RegistryHMACKeyFile holds the key of the HMACs the registry keeps
	// instead of anything derived from a plaintext (registry_hmac_key.go);
	// "" uses <DataDir>/registry-hmac.key, made on first start, which only
	// development allows.
	RegistryHMACKeyFile string
}

// DefaultConfig is the Config of a run with no flags and no environment.
func DefaultConfig() Config {
	return Config{
		Listen:          defaultListen,
		AdminListen:     defaultAdminListen,
		DataDir:         defaultDataDir,
		Environment:     defaultEnvironment,
		LogLevel:        slog.LevelInfo,
		MaxFileBytes:    defaultMaxFileBytes,
		ShutdownTimeout: defaultShutdownTimeout,

		MaxConcurrentFiles: defaultMaxConcurrentFiles,
		MaxActiveCalls:     defaultMaxActiveCalls,
		MaxConnections:     defaultMaxConnections,

		UpstreamCallTimeout: defaultUpstreamCallTimeout,
		StreamIdleTimeout:   defaultStreamIdleTimeout,
		ReconcileInterval:   defaultReconcileInterval,
	}
}

// embeddedSandbox reports whether c runs the upstream emulator in-process.
func (c Config) embeddedSandbox() bool { return c.UpstreamURL == "" }

// Validate reports every problem with c at once, one line each, saying what
// to change. It reads the files the security flags name (they must exist and
// parse) and, in production, applies the production guard (productionProblems),
// which also looks at the process's GODEBUG.
func (c Config) Validate() error { return c.validate(os.Getenv) }

// validate is Validate with the process environment read through getenv.
func (c Config) validate(getenv func(string) string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// NOTE: first, and on c (a copy) itself: every later message may quote
	// these URLs, and none may echo a password.
	for _, f := range []struct {
		name string
		url  *string
	}{{"--upstream-url", &c.UpstreamURL}, {"--jwks-url", &c.JWKSURL}} {
		if stripped, had := stripUserinfo(*f.url); had {
			bad("%s carries user info (user:password@): remove it; recoveryd authenticates to the upstream only with --upstream-token-file, and a URL is logged", f.name)
			*f.url = stripped
		}
	}

	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		bad("--listen %q is not host:port (e.g. %s, or 0.0.0.0:50051 with --caller-tokens-file to serve every interface)", c.Listen, defaultListen)
	}
	// NOTE: in every environment: a development server that forgot
	// --environment production must not serve every organisation to anyone
	// who reaches the port.
	if reachable, ok := beyondLoopback(c.Listen); ok && reachable && c.CallerTokensFile == "" && c.ClientCA == "" {
		bad("--listen %s is reachable beyond this host but callers need not authenticate: set --caller-tokens-file (and/or --client-ca), or listen on loopback (e.g. %s)", c.Listen, defaultListen)
	}
	if c.AdminListen != "" {
		if _, port, err := net.SplitHostPort(c.AdminListen); err != nil || port == "" {
			bad("--admin-listen %q is not host:port (e.g. %s), or empty to disable the admin server", c.AdminListen, defaultAdminListen)
		} else if reachable, _ := beyondLoopback(c.AdminListen); reachable && !c.AdminListenPublic {
			bad("--admin-listen %s is reachable beyond this host and /metrics, /healthz and /readyz need no credentials: listen on loopback (e.g. %s), or set --admin-listen-public when a network policy decides who reaches it", c.AdminListen, defaultAdminListen)
		}
	}
	if c.AdminPprof {
		if c.AdminListen == "" {
			bad("--admin-pprof is set but the admin server is off (--admin-listen is empty): give a loopback --admin-listen (e.g. %s) to serve /debug/pprof/", defaultAdminListen)
		} else if reachable, ok := beyondLoopback(c.AdminListen); ok && reachable {
			bad("--admin-pprof serves runtime profiles, which anyone reaching the port could take at the cost of CPU: use it only with a loopback --admin-listen (e.g. %s), not %s", defaultAdminListen, c.AdminListen)
		}
	}
	if strings.TrimSpace(c.DataDir) == "" {
		bad("--data-dir is empty: give a directory for the registry and sandbox state (default %s)", defaultDataDir)
	}
	production := c.Environment == EnvProduction
	if c.Environment != EnvDevelopment && !production {
		bad("--environment %q is not %s or %s", c.Environment, EnvDevelopment, EnvProduction)
	}
	if c.MaxFileBytes < 1 {
		bad("--max-file-bytes must be at least 1 (got %d); the upstream's limit is %d", c.MaxFileBytes, defaultMaxFileBytes)
	}
	if c.UpstreamCallTimeout <= 0 || c.UpstreamCallTimeout > maxUpstreamCallTimeout {
		bad("--upstream-call-timeout must be positive and at most %s (got %s), e.g. %s", maxUpstreamCallTimeout, c.UpstreamCallTimeout, defaultUpstreamCallTimeout)
	}
	errs = append(errs, c.overloadProblems()...)
	if c.StreamIdleTimeout <= 0 || c.StreamIdleTimeout > maxStreamIdleTimeout {
		bad("--stream-idle-timeout must be positive and at most %s (got %s), e.g. %s", maxStreamIdleTimeout, c.StreamIdleTimeout, defaultStreamIdleTimeout)
	}
	if c.ReconcileInterval != 0 && (c.ReconcileInterval < minReconcileInterval || c.ReconcileInterval > maxReconcileInterval) {
		bad("--reconcile-interval must be 0 (off, development only) or from %s to %s (got %s), e.g. %s", minReconcileInterval, maxReconcileInterval, c.ReconcileInterval, defaultReconcileInterval)
	}
	if c.AuditRetention < 0 || c.AuditRetention > 0 && c.AuditRetention < minAuditRetention {
		bad("--audit-retention must be 0 (keep every audit record) or at least %s (got %s), e.g. 8760h for a year", minAuditRetention, c.AuditRetention)
	}
	if c.ShutdownTimeout <= 0 {
		bad("--shutdown-timeout must be positive (got %s), e.g. %s", c.ShutdownTimeout, defaultShutdownTimeout)
	}
	errs = append(errs, c.databaseProblems()...)
	errs = append(errs, c.upstreamProblems(production)...)
	errs = append(errs, c.securityProblems()...)
	errs = append(errs, c.registryHMACKeyProblems()...)
	if production {
		// NOTE: last, so the guard's refusals read as one block.
		errs = append(errs, c.productionProblems(getenv)...)
	}
	return errors.Join(errs...)
}

// beyondLoopback reports whether a host:port listens on more than the
// loopback interface; ok is false when addr is not host:port (reported
// elsewhere). Only "localhost" and loopback IPs count as loopback: an empty
// host is every interface, and any other name may resolve anywhere.
func beyondLoopback(addr string) (reachable, ok bool) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, false
	}
	if strings.EqualFold(host, "localhost") {
		return false, true
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || !ip.IsLoopback(), true
}

// stripUserinfo removes the user info (user:password@) of a URL and reports
// whether there was any. A URL that does not parse but holds an "@" is
// replaced whole, as it may hold a password.
func stripUserinfo(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			return redacted, true
		}
		return raw, false
	}
	if u.User == nil {
		return raw, false
	}
	u.User = nil
	return u.String(), true
}

// overloadProblems checks the overload flags.
func (c Config) overloadProblems() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if math.IsNaN(c.RateLimit) || c.RateLimit < 0 || c.RateLimit > auth.MaxLimit {
		bad("--rate-limit must be calls per second per caller from 0 (off) to %d (got %v), e.g. 50", auth.MaxLimit, c.RateLimit)
	}
	switch {
	case c.RateBurst < 0 || c.RateBurst > auth.MaxLimit:
		bad("--rate-burst must be from 0 to %d (got %d)", auth.MaxLimit, c.RateBurst)
	case c.RateLimit > 0 && c.RateBurst < 1:
		bad("--rate-limit needs --rate-burst of at least 1 (calls a caller may make at once), e.g. --rate-burst %d", max(1, int(math.Ceil(c.RateLimit))))
	}
	if c.MaxConcurrentCalls < 0 || c.MaxConcurrentCalls > auth.MaxLimit {
		bad("--max-concurrent-calls must be from 0 (off) to %d (got %d)", auth.MaxLimit, c.MaxConcurrentCalls)
	}
	if c.MaxConcurrentFiles < 0 || c.MaxConcurrentFiles > auth.MaxLimit {
		bad("--max-concurrent-files must be from 0 (off) to %d (got %d), e.g. %d", auth.MaxLimit, c.MaxConcurrentFiles, defaultMaxConcurrentFiles)
	}
	if c.MaxActiveCalls < 0 || c.MaxActiveCalls > auth.MaxLimit {
		bad("--max-active-calls must be from 0 (off) to %d (got %d), e.g. %d", auth.MaxLimit, c.MaxActiveCalls, suggestedMaxActiveCalls)
	}
	if c.MaxConnections < 1 || c.MaxConnections > auth.MaxLimit {
		bad("--max-connections must be from 1 to %d (got %d), e.g. %d", auth.MaxLimit, c.MaxConnections, defaultMaxConnections)
	}
	return errs
}

// upstreamProblems checks the upstream flags. The production-only rules
// (no embedded sandbox, no http://, a token file) are productionProblems'.
func (c Config) upstreamProblems(production bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.embeddedSandbox() {
		if c.UpstreamTokenFile != "" {
			bad("--upstream-token-file is set but --upstream-url is not: set --upstream-url too, or drop the token file to use the embedded sandbox")
		}
		if c.JWKSURL != "" || c.VerificationKeysFile != "" || c.VerificationKeyFingerprints != "" {
			bad("--jwks-url, --verification-keys-file and --verification-key-fingerprints need --upstream-url: the embedded sandbox's signing keys are trusted automatically")
		}
		if c.UpstreamCAFile != "" {
			bad("--upstream-ca-file needs --upstream-url: the embedded sandbox is reached over loopback http://")
		}
		return errs
	}

	if err := checkHTTPURL("--upstream-url", c.UpstreamURL); err != nil {
		errs = append(errs, err)
	}
	if c.UpstreamTokenFile == "" && !production {
		bad("--upstream-token-file is required with --upstream-url: a file holding the partner API token (or set %s)", EnvName("upstream-token-file"))
	}
	switch {
	case c.JWKSURL != "" && c.VerificationKeysFile != "":
		bad("set only one of --jwks-url and --verification-keys-file")
	case c.JWKSURL != "":
		if err := checkHTTPURL("--jwks-url", c.JWKSURL); err != nil {
			errs = append(errs, err)
		}
	case c.VerificationKeysFile == "":
		hint := ""
		switch strings.TrimRight(c.UpstreamURL, "/") {
		case upstream.SandboxBaseURL:
			hint = " (for this host: --jwks-url " + upstream.SandboxJWKSURL + ")"
		case upstream.ProductionBaseURL:
			hint = " (for this host: --jwks-url " + upstream.ProductionJWKSURL + ")"
		}
		bad("--upstream-url needs the enclave's verification keys: set --jwks-url or --verification-keys-file%s", hint)
	}
	if c.VerificationKeyFingerprints != "" {
		if _, err := upstream.ParseVerificationKeyFingerprints(c.VerificationKeyFingerprints); err != nil {
			bad("--verification-key-fingerprints: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	}
	if c.UpstreamCAFile != "" {
		if _, err := loadCACertificates("--upstream-ca-file", c.UpstreamCAFile); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// checkHTTPURL checks that raw is an absolute http(s) URL; whether http://
// is allowed is the production guard's business.
func checkHTTPURL(flagName, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%s %q is not an absolute https:// URL", flagName, raw)
	}
	return nil
}

// Database schemes --database-url accepts.
const (
	schemePostgres   = "postgres"
	schemePostgreSQL = "postgresql"
)

// databaseScheme returns the scheme of a --database-url. Its errors never
// quote the URL, which may hold a password.
func databaseScheme(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "", errors.New("--database-url is not a URL: use postgres://user@host/db, or leave it empty for SQLite under --data-dir")
	}
	switch u.Scheme {
	case schemePostgres, schemePostgreSQL:
		return u.Scheme, nil
	}
	return "", fmt.Errorf("--database-url scheme %q is not supported: use postgres://user@host/db, or leave it empty for SQLite under --data-dir", u.Scheme)
}

// redactDatabaseURL hides the password (in the userinfo or a password query
// parameter) of a database URL; anything that does not parse as a URL is
// hidden whole.
func redactDatabaseURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return redacted
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redacted)
	}
	if q := u.Query(); len(q) > 0 {
		for k := range q {
			if strings.Contains(strings.ToLower(k), "pass") {
				q.Set(k, redacted)
			}
		}
		u.RawQuery = q.Encode()
	}
	// NOTE: url.URL.String escapes the brackets of [redacted]; undo that so
	// the marker reads the same everywhere.
	out := u.String()
	out = strings.ReplaceAll(out, url.QueryEscape(redacted), redacted)
	out = strings.ReplaceAll(out, url.PathEscape(redacted), redacted)
	return out
}

// attrs lists c for logs and String, secrets redacted.
func (c Config) attrs() []slog.Attr {
	upstreamURL := c.UpstreamURL
	if c.embeddedSandbox() {
		upstreamURL = "(embedded sandbox)"
	}
	return []slog.Attr{
		slog.String("listen", c.Listen),
		slog.String("admin_listen", c.AdminListen),
		slog.Bool("admin_listen_public", c.AdminListenPublic),
		slog.Bool("admin_pprof", c.AdminPprof),
		slog.String("data_dir", c.DataDir),
		slog.String("environment", c.Environment),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("upstream_url", upstreamURL),
		slog.String("upstream_token_file", c.UpstreamTokenFile),
		slog.String("jwks_url", c.JWKSURL),
		slog.String("verification_keys_file", c.VerificationKeysFile),
		slog.String("verification_key_fingerprints", c.VerificationKeyFingerprints),
		slog.String("database_url", redactDatabaseURL(c.DatabaseURL)),
		slog.String("database_url_file", c.DatabaseURLFile),
		slog.Int64("max_file_bytes", c.MaxFileBytes),
		slog.String("shutdown_timeout", c.ShutdownTimeout.String()),
		slog.String("upstream_call_timeout", c.UpstreamCallTimeout.String()),
		slog.Float64("rate_limit", c.RateLimit),
		slog.Int("rate_burst", c.RateBurst),
		slog.Int("max_concurrent_calls", c.MaxConcurrentCalls),
		slog.Int("max_concurrent_files", c.MaxConcurrentFiles),
		slog.Int("max_active_calls", c.MaxActiveCalls),
		slog.Int("max_connections", c.MaxConnections),
		slog.String("stream_idle_timeout", c.StreamIdleTimeout.String()),
		slog.String("caller_tokens_file", c.CallerTokensFile),
		slog.String("tls_cert", c.TLSCert),
		slog.String("tls_key", c.TLSKey),
		slog.Bool("tls_terminated_by_proxy", c.TLSTerminatedByProxy),
		slog.String("client_ca", c.ClientCA),
		slog.String("client_trust_domain", c.ClientTrustDomain),
		slog.String("upstream_ca_file", c.UpstreamCAFile),
		slog.String("audit_retention", c.AuditRetention.String()),
		slog.String("registry_hmac_key_file", c.RegistryHMACKeyFile),
	}
}

// LogValue logs c as a group, secrets redacted.
func (c Config) LogValue() slog.Value { return slog.GroupValue(c.attrs()...) }

// String prints c as key=value pairs, secrets redacted.
func (c Config) String() string {
	var b strings.Builder
	for i, a := range c.attrs() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%q", a.Key, a.Value.String())
	}
	return b.String()
}

// EnvPrefix prefixes every flag's environment fallback.
const EnvPrefix = "RECOVERY_"

// EnvName is the environment fallback of a flag: --upstream-url is
// RECOVERY_UPSTREAM_URL. Validate's messages name it beside the flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
