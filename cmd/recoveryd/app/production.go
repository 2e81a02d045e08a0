package app

import (
	"fmt"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/walletprovider/recoveryservice/upstream"
)

// productionProblems is the production guard: what must never run with
// --environment production, one error (one line) per problem, so an
// operator fixes them all in one go. getenv reads the process environment.
//
// It refuses: the embedded sandbox; the provider's sandbox (UAT) host, or
// its JWKS; plain http:// to the upstream or the JWKS; no upstream token
// file; no caller authentication; the production host verified against
// anything but the production JWKS (a --verification-keys-file is allowed,
// for air-gapped deployments); and GODEBUG settings that weaken Go's
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
		case sameHost(upstreamURL, upstream.ProductionBaseURL) && c.JWKSURL != upstream.ProductionJWKSURL:
			bad("--upstream-url is the production host but --jwks-url is %s: use --jwks-url %s (or pin the keys with --verification-keys-file)", c.JWKSURL, upstream.ProductionJWKSURL)
		}
	}
	if c.CallerTokensFile == "" && c.ClientCA == "" {
		bad("production needs caller authentication: set --caller-tokens-file (bearer tokens) and/or --client-ca with --tls-cert (mTLS); without it anyone who reaches --listen may assign keys and store backups")
	}
	if weak := weakTLSSettings(getenv); len(weak) > 0 {
		bad("GODEBUG weakens Go's certificate or TLS checks (%s): production refuses x509 and TLS overrides; remove them (trust a private upstream CA with --upstream-ca-file instead)", strings.Join(weak, ", "))
	}
	return errs
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
	if c.TLSCert == "" {
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
