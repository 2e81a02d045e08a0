package app

import (
	"fmt"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/upstream"
)

// productionProblems is the production guard: what must never run with
// --environment production, one error (one line) per problem, so an
// operator fixes them all in one go. getenv reads the process environment.
//
// It refuses: the embedded sandbox; the provider's sandbox (UAT) host, or
// its JWKS; plain http:// to the upstream or the JWKS; no upstream token
// file; no caller authentication; a JWKS other than the provider's
// production JWKS without --verification-key-fingerprints (a
// --verification-keys-file is allowed, for air-gapped deployments); plaintext gRPC unless a proxy or mesh is said
// to terminate TLS (--tls-terminated-by-proxy); and GODEBUG settings that weaken Go's
// certificate or TLS checks. recoveryd has no option that skips certificate
// verification; a private upstream CA is trusted with --upstream-ca-file.
func (c Config) productionProblems(getenv func(string) string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	upstreamURL := parseLoosely(c.UpstreamURL)
	jwksURL := parseLoosely(c.JWKSURL)
	if c.embeddedSandbox() {
		bad("--environment production needs a real upstream: set --upstream-url and --upstream-token-file (the embedded sandbox is for development only)")
	} else {
		if sameHost(upstreamURL, upstream.SandboxBaseURL) {
			bad("--upstream-url %s is the provider's sandbox (UAT) host: production must use the production host, e.g. %s", c.UpstreamURL, upstream.ProductionBaseURL)
		}
		if upstreamURL.Scheme == "http" {
			bad("--upstream-url uses plain http://: production requires https:// (http:// is for --environment %s only)", EnvDevelopment)
		}
		if c.UpstreamTokenFile == "" {
			bad("--upstream-token-file is required in production: a file holding the partner API token (or set %s)", EnvName("upstream-token-file"))
		}
	}
	if c.JWKSURL != "" {
		if jwksURL.Scheme == "http" {
			bad("--jwks-url uses plain http://: production requires https:// (http:// is for --environment %s only)", EnvDevelopment)
		}
		switch {
		case sameHost(jwksURL, upstream.SandboxJWKSURL):
			bad("--jwks-url %s is the provider's sandbox (UAT) JWKS: production keys must verify against %s", c.JWKSURL, upstream.ProductionJWKSURL)
		case c.JWKSURL != upstream.ProductionJWKSURL && c.VerificationKeyFingerprints == "":
			// NOTE: whoever controls another JWKS (a proxy, a mirror) could
			// publish a key of their own; pinned, it is never used.
			bad("--jwks-url %s is not the provider's production JWKS (%s): pin its signing keys with --verification-key-fingerprints (the SHA-256 of each), or use --verification-keys-file", c.JWKSURL, upstream.ProductionJWKSURL)
		}
	}
	if c.TLSCert == "" && !c.TLSTerminatedByProxy {
		bad("production refuses plaintext gRPC: set --tls-cert and --tls-key, or --tls-terminated-by-proxy when a proxy or service mesh terminates TLS in front of --listen; otherwise bearer tokens and recovery material cross the network in clear")
	}
	if c.CallerTokensFile == "" && c.ClientCA == "" {
		bad("production needs caller authentication: set --caller-tokens-file (bearer tokens) and/or --client-ca with --tls-cert (mTLS); without it anyone who reaches --listen may assign keys and store backups")
	}
	if weak := weakTLSSettings(getenv); len(weak) > 0 {
		bad("GODEBUG weakens Go's certificate or TLS checks (%s): production refuses x509 and TLS overrides; remove them (trust a private upstream CA with --upstream-ca-file instead)", strings.Join(weak, ", "))
	}
	if other := unlistedGODEBUG(getenv("GODEBUG")); len(other) > 0 {
		bad("GODEBUG sets %s: production allows only %s (http2debug, for one, logs request headers, the partner token among them); remove the rest", strings.Join(other, ", "), strings.Join(allowedGODEBUG, ", "))
	}
	for _, name := range []string{"SSL_CERT_FILE", "SSL_CERT_DIR"} {
		if getenv(name) != "" {
			bad("%s is set: it replaces the roots Go trusts for the upstream's and the JWKS's HTTPS; unset it (trust a private CA with --upstream-ca-file, besides the system roots)", name)
		}
	}
	// The callers file is held to this rule in every environment (by
	// service/auth); these two only here, as development runs with test
	// credentials written by scripts under the usual umask.
	if c.UpstreamTokenFile != "" {
		if err := auth.CheckSecretFile(c.UpstreamTokenFile); err != nil {
			bad("--upstream-token-file %v", err)
		}
	}
	// NOTE: a --tls-key that cannot be opened is securityProblems' to report.
	if c.TLSKey != "" && checkReadable("--tls-key", c.TLSKey) == nil {
		if err := auth.CheckSecretFile(c.TLSKey); err != nil {
			bad("--tls-key %v", err)
		}
	}
	if c.RegistryHMACKeyFile == "" {
		bad("--registry-hmac-key-file is required in production: a file of at least %d random bytes (e.g. openssl rand -hex 32), the same for every replica; it keys the registry's idempotency hashes, so nothing derived from a plaintext is kept in clear", minRegistryHMACKeyBytes)
	}
	if c.ReconcileInterval == 0 {
		bad("--reconcile-interval 0 turns the reconciler off: production needs it (e.g. %s), or customers whose assignment answer was lost stay stuck until an operator acts", defaultReconcileInterval)
	}
	errs = append(errs, c.productionDatabaseProblems(getenv)...)
	return errs
}

// allowedGODEBUG are the GODEBUG settings production accepts, with any
// value: they tune the runtime or switch HTTP/2 off, and neither print
// requests nor weaken a check. Everything else is refused rather than
// judged: new settings appear with every Go release.
var allowedGODEBUG = []string{"gctrace", "http2client", "http2server", "madvdontneed"}

// unlistedGODEBUG lists the settings of godebug that are neither allowed
// nor x509/TLS settings (weakTLSSettings reports those).
func unlistedGODEBUG(godebug string) []string {
	var out []string
	for setting := range strings.SplitSeq(godebug, ",") {
		setting = strings.TrimSpace(setting)
		name, _, _ := strings.Cut(setting, "=")
		if name == "" || slices.Contains(allowedGODEBUG, name) || strings.HasPrefix(name, "x509") || strings.HasPrefix(name, "tls") {
			continue
		}
		out = append(out, setting)
	}
	return out
}

// postgresNeedsVerifyFull reports whether a PostgreSQL URL verifies its
// server: sslmode=verify-full, or every host a unix socket (no network to
// protect). Without sslmode in the URL, pgx takes PGSSLMODE, then
// "prefer", which falls back to plaintext. mode is what was found, for the
// message.
func postgresNeedsVerifyFull(raw string, getenv func(string) string) (mode string, ok bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)", false
	}
	q := u.Query()
	mode = q.Get("sslmode")
	if mode == "" {
		mode = getenv("PGSSLMODE")
	}
	if mode == "" {
		mode = "prefer (the default)"
	}
	if mode == "verify-full" {
		return mode, true
	}
	hosts := q["host"]
	if h := u.Hostname(); h != "" {
		hosts = append(hosts, h)
	}
	for _, h := range hosts {
		if !strings.HasPrefix(h, "/") {
			return mode, false
		}
	}
	return mode, len(hosts) > 0
}

// databasePassword reports whether a database URL holds a password, in its
// user info or a password query parameter.
func databasePassword(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	if _, has := u.User.Password(); has {
		return true
	}
	return u.Query().Has("password")
}

// parseLoosely parses raw, or returns an empty URL: whether raw is a valid
// URL at all is reported elsewhere, once.
func parseLoosely(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		return &url.URL{}
	}
	return u
}

// sameHost reports whether u is on the host of reference (a constant of the
// upstream package), ignoring case and a trailing dot.
func sameHost(u *url.URL, reference string) bool {
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	return host != "" && host == parseLoosely(reference).Hostname()
}

// weakTLSSettings lists the GODEBUG settings, of the environment and of the
// binary's build-time defaults (go.mod godebug lines), that change how Go
// verifies certificates or negotiates TLS (x509…, tls…). Each restores an
// older, weaker behaviour or replaces the trusted roots, so production
// refuses them all rather than judging them one by one.
func weakTLSSettings(getenv func(string) string) []string {
	var weak []string
	check := func(source, godebug string) {
		for setting := range strings.SplitSeq(godebug, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(setting), "=")
			if strings.HasPrefix(name, "x509") || strings.HasPrefix(name, "tls") {
				weak = append(weak, source+" "+strings.TrimSpace(setting))
			}
		}
	}
	check("GODEBUG", getenv("GODEBUG"))
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "DefaultGODEBUG" {
				check("build default", s.Value)
			}
		}
	}
	return slices.Compact(weak)
}

// developmentBanner is the warning recoveryd prints to stderr when it starts
// in development: every way in which this server is not safe for real
// recovery material. It is "" in production, which refuses all of them.
func developmentBanner(c Config, getenv func(string) string) string {
	if c.Environment != EnvDevelopment {
		return ""
	}
	var unsafe []string
	if c.embeddedSandbox() {
		unsafe = append(unsafe, "EMBEDDED SANDBOX: keys and backups go to an in-process emulator, not to the Partner Key Service")
	}
	if c.CallerTokensFile == "" {
		unsafe = append(unsafe, "NO CALLER AUTHENTICATION: anyone who reaches "+c.Listen+" may assign keys and store backups (--caller-tokens-file)")
	}
	unsafe = append(unsafe, "PUBLIC REFLECTION: unauthenticated clients may list and describe the whole API")
	if c.TLSCert == "" && !c.TLSTerminatedByProxy {
		unsafe = append(unsafe, "PLAINTEXT gRPC: requests and bearer tokens cross the network unencrypted (--tls-cert, --tls-key)")
	}
	if !c.embeddedSandbox() && parseLoosely(c.UpstreamURL).Scheme == "http" {
		unsafe = append(unsafe, "HTTP UPSTREAM: the partner token and ciphertexts travel unencrypted to "+c.UpstreamURL)
	}
	if c.JWKSURL != "" && parseLoosely(c.JWKSURL).Scheme == "http" {
		unsafe = append(unsafe, "HTTP JWKS: the enclave verification keys are fetched unauthenticated from "+c.JWKSURL)
	}
	if weak := weakTLSSettings(getenv); len(weak) > 0 {
		unsafe = append(unsafe, "WEAKENED TLS: "+strings.Join(weak, ", "))
	}

	const rule = "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n!! recoveryd runs in DEVELOPMENT mode: never give it real recovery material.\n!! Unsafe in this configuration:\n", rule)
	for _, u := range unsafe {
		fmt.Fprintf(&b, "!!   - %s\n", u)
	}
	fmt.Fprintf(&b, "!! --environment %s refuses to start like this.\n%s\n", EnvProduction, rule)
	return b.String()
}
