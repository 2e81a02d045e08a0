package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/walletprovider/recoveryservice/cmd/recoveryd/app"
	"github.com/walletprovider/recoveryservice/upstream"
)

// checkConfigFlag asks for a validate-only run: parse, Validate, report,
// start nothing. It has no RECOVERY_* fallback on purpose: a variable left in
// a ConfigMap would turn every replica into a process that validates and exits.
const checkConfigFlag = "check-config"

// verifyAuditFlag asks for the audit trail's verification and nothing else;
// like checkConfigFlag it has no RECOVERY_* fallback.
const verifyAuditFlag = "verify-audit"

// runMode is what main does with a parsed configuration.
type runMode int

const (
	// modeServe runs the server.
	modeServe runMode = iota
	// modeCheckConfig only validates the configuration (--check-config).
	modeCheckConfig
	// modeVerifyAudit only verifies the audit trail (--verify-audit).
	modeVerifyAudit
)

// parseConfig reads command-line args (without the program name) and the
// RECOVERY_* environment through getenv. A flag on the command line wins over
// its environment variable, which wins over the default; an empty variable
// counts as unset. It returns flag.ErrHelp after printing usage for -help.
// It does not validate: call Validate.
func parseConfig(args []string, getenv func(string) string, usage io.Writer) (app.Config, runMode, error) {
	cfg := app.DefaultConfig()
	fs := flag.NewFlagSet("recoveryd", flag.ContinueOnError)
	fs.SetOutput(usage)
	checkOnly := fs.Bool(checkConfigFlag, false, "validate the configuration (flags and RECOVERY_* variables, the files they name, the production guard), print one line per problem and exit: 0 when it would start, 2 when not; starts nothing")
	verifyAudit := fs.Bool(verifyAuditFlag, false, "verify the audit trail of the registry the flags name (every writer's hash chain, checkpoints, prunes), print the result and exit: 0 when every link verifies, 4 at the first broken link (named), 1 when the registry cannot be read; serves nothing")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "gRPC listen address, host:port")
	fs.StringVar(&cfg.AdminListen, "admin-listen", cfg.AdminListen, "admin HTTP address for /metrics, /healthz and /readyz, host:port; empty (--admin-listen=) disables it")
	fs.BoolVar(&cfg.AdminListenPublic, "admin-listen-public", cfg.AdminListenPublic, "allow a non-loopback --admin-listen: its endpoints need no credentials, so say so only where a network policy decides who reaches it")
	fs.BoolVar(&cfg.AdminPprof, "admin-pprof", cfg.AdminPprof, "also serve Go's runtime profiles (CPU, heap, allocations, blocking, mutexes, goroutines) under /debug/pprof/ on a loopback --admin-listen, for profiling under load")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the SQLite registry and the embedded sandbox's state")
	fs.StringVar(&cfg.Environment, "environment", cfg.Environment, "development or production (production refuses http:// upstreams and the embedded sandbox)")
	fs.TextVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "minimum log level: debug, info, warn or error")
	fs.StringVar(&cfg.UpstreamURL, "upstream-url", cfg.UpstreamURL, "Partner Key Service base URL, e.g. "+upstream.SandboxBaseURL+"; empty runs the embedded sandbox")
	fs.StringVar(&cfg.UpstreamTokenFile, "upstream-token-file", cfg.UpstreamTokenFile, "file holding the partner API token (required with --upstream-url)")
	fs.StringVar(&cfg.JWKSURL, "jwks-url", cfg.JWKSURL, "JWKS of the enclave's signing keys, e.g. "+upstream.SandboxJWKSURL)
	fs.StringVar(&cfg.VerificationKeysFile, "verification-keys-file", cfg.VerificationKeysFile, "JWKS or PEM file of the enclave's signing keys (instead of --jwks-url)")
	fs.StringVar(&cfg.VerificationKeyFingerprints, "verification-key-fingerprints", cfg.VerificationKeyFingerprints, "comma-separated SHA-256 fingerprints (hex, of the DER public key) of the enclave signing keys to trust; other keys of the JWKS or key file are never used; production needs them with any --jwks-url but the provider's production JWKS")
	fs.StringVar(&cfg.DatabaseURL, "database-url", cfg.DatabaseURL, "postgres://… registry; empty keeps a SQLite registry at <data-dir>/registry.db")
	fs.StringVar(&cfg.DatabaseURLFile, "database-url-file", cfg.DatabaseURLFile, "file holding the postgres://… URL, password included (instead of --database-url); readable by recoveryd only")
	fs.Int64Var(&cfg.MaxFileBytes, "max-file-bytes", cfg.MaxFileBytes, "largest file SecureFile accepts, in bytes")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long in-flight calls may finish after SIGTERM/SIGINT")
	fs.DurationVar(&cfg.UpstreamCallTimeout, "upstream-call-timeout", cfg.UpstreamCallTimeout, "bound of one AssignKey or SecureData call to the upstream, retries included (at most 5m)")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", cfg.RateLimit, "calls per second each caller may make, sustained (a token bucket per caller; per peer address without caller authentication); 0 is off; the callers file may override it per caller")
	fs.IntVar(&cfg.RateBurst, "rate-burst", cfg.RateBurst, "calls a caller may make at once after a quiet spell (the bucket's size); at least 1 with --rate-limit")
	fs.IntVar(&cfg.MaxConcurrentCalls, "max-concurrent-calls", cfg.MaxConcurrentCalls, "calls each caller may have in flight at once (per peer host without caller authentication); 0 is off; the callers file may override it per caller")
	fs.IntVar(&cfg.MaxConnections, "max-connections", cfg.MaxConnections, "gRPC client connections served at once; one beyond it waits, accepted only when another closes")
	fs.IntVar(&cfg.MaxConcurrentFiles, "max-concurrent-files", cfg.MaxConcurrentFiles, "SecureFile streams in flight at once, all callers together; 0 is off")
	fs.IntVar(&cfg.MaxActiveCalls, "max-active-calls", cfg.MaxActiveCalls, "unary calls worked on at once, all callers together; the rest wait, and are admitted one caller at a time in turn; 0 is off")
	fs.DurationVar(&cfg.ReconcileInterval, "reconcile-interval", cfg.ReconcileInterval, "how often the reconciler re-sends assignments whose outcome is unknown (doubling per pair up to 30m); from 1s to 1h; 0 turns it off (development only)")
	fs.DurationVar(&cfg.StreamIdleTimeout, "stream-idle-timeout", cfg.StreamIdleTimeout, "longest pause between two messages of a SecureFile stream (before the header, between chunks, before the close); a longer one aborts the upload, nothing stored (ABORTED, STREAM_IDLE_TIMEOUT); at most 10m")
	// Security. NOTE: every secret comes from a file named here; no flag or
	// variable takes a secret's value.
	fs.StringVar(&cfg.CallerTokensFile, "caller-tokens-file", cfg.CallerTokensFile, "JSON file of the callers allowed in (SHA-256 of their bearer tokens, organisations); reloaded on SIGHUP; empty turns caller authentication off (development only)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "PEM certificate chain of the gRPC listener (with --tls-key); empty serves plaintext gRPC")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "PEM private key of --tls-cert")
	fs.BoolVar(&cfg.TLSTerminatedByProxy, "tls-terminated-by-proxy", cfg.TLSTerminatedByProxy, "a proxy or service mesh terminates TLS in front of a plaintext --listen; production refuses plaintext gRPC without --tls-cert or this")
	fs.StringVar(&cfg.ClientCA, "client-ca", cfg.ClientCA, "PEM CA certificates that sign client certificates (mTLS); needs --tls-cert and --caller-tokens-file")
	fs.StringVar(&cfg.ClientTrustDomain, "client-trust-domain", cfg.ClientTrustDomain, "SPIFFE trust domain (e.g. prod.example) whose client certificate IDs name callers by exact path: spiffe://prod.example/wallet-api is the caller wallet-api; needs --client-ca")
	fs.StringVar(&cfg.RegistryHMACKeyFile, "registry-hmac-key-file", cfg.RegistryHMACKeyFile, "file holding the key (at least 32 bytes, e.g. openssl rand -hex 32) of the HMACs the registry keeps instead of plaintext-derived hashes; the same for every replica; required in production; empty makes <data-dir>/registry-hmac.key (development)")
	fs.StringVar(&cfg.UpstreamCAFile, "upstream-ca-file", cfg.UpstreamCAFile, "PEM CA certificates trusted, besides the system roots, for the upstream's and the JWKS's HTTPS (a private CA)")
	fs.DurationVar(&cfg.AuditRetention, "audit-retention", cfg.AuditRetention, "age past which audit records are exported as JSON lines (with their chain hashes) under <data-dir>/audit-export and then pruned, hourly; 0 keeps them all; else at least 24h")
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != checkConfigFlag && f.Name != verifyAuditFlag {
			f.Usage += " (env " + app.EnvName(f.Name) + ")"
		}
	})
	fs.Usage = func() {
		fmt.Fprintf(usage, "Usage: recoveryd [flags]\n\nServes the RecoveryService over gRPC. With no flags it runs on an embedded\nsandbox upstream with a SQLite registry under %s.\n\n", cfg.DataDir)
		fs.PrintDefaults()
	}

	if err := fs.Parse(args); err != nil {
		return app.Config{}, modeServe, err
	}
	if fs.NArg() > 0 {
		return app.Config{}, modeServe, fmt.Errorf("unexpected argument %q: recoveryd takes only flags (see -help)", fs.Arg(0))
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := app.EnvName(f.Name)
		value := getenv(name)
		if f.Name == checkConfigFlag || f.Name == verifyAuditFlag || onCommandLine[f.Name] || value == "" {
			return
		}
		if err := f.Value.Set(value); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s: %w", name, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return app.Config{}, modeServe, err
	}
	if *checkOnly {
		return cfg, modeCheckConfig, nil
	}
	if *verifyAudit {
		return cfg, modeVerifyAudit, nil
	}
	return cfg, modeServe, nil
}
