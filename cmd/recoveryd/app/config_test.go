package app

import (
	"bytes"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
)

// envMap is a getenv over a fixed map.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestValidate(t *testing.T) {
	remote := func(f func(*Config)) Config {
		c := DefaultConfig()
		c.UpstreamURL = "https://upstream.example"
		c.UpstreamTokenFile = "/run/secrets/token"
		c.JWKSURL = "https://keys.example/jwks.json"
		if f != nil {
			f(&c)
		}
		return c
	}
	embedded := func(f func(*Config)) Config {
		c := DefaultConfig()
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		// want are substrings of the error; none means valid.
		want []string
		// lines is how many problems (lines) the error reports; 0 means 1.
		lines int
	}{
		{name: "defaults: embedded sandbox", cfg: DefaultConfig()},
		{name: "remote upstream with JWKS", cfg: remote(nil)},
		{name: "remote upstream with key file", cfg: remote(func(c *Config) { c.JWKSURL, c.VerificationKeysFile = "", "/etc/keys.pem" })},
		{name: "development allows http upstream", cfg: remote(func(c *Config) {
			c.UpstreamURL, c.JWKSURL = "http://127.0.0.1:8080", "http://127.0.0.1:8080/.well-known/jwks.json"
		})},
		{name: "postgres database", cfg: remote(func(c *Config) { c.DatabaseURL = "postgres://u:p@db.example:5432/recovery" })},
		{name: "postgresql scheme", cfg: embedded(func(c *Config) { c.DatabaseURL = "postgresql://db.example/recovery" })},

		{name: "listen without port", cfg: embedded(func(c *Config) { c.Listen = "localhost" }), want: []string{`--listen "localhost" is not host:port`}},
		{name: "empty data dir", cfg: embedded(func(c *Config) { c.DataDir = " " }), want: []string{"--data-dir is empty"}},
		{name: "unknown environment", cfg: embedded(func(c *Config) { c.Environment = "staging" }), want: []string{`--environment "staging" is not development or production`}},
		{name: "zero file limit", cfg: embedded(func(c *Config) { c.MaxFileBytes = 0 }), want: []string{"--max-file-bytes must be at least 1"}},
		{name: "zero shutdown timeout", cfg: embedded(func(c *Config) { c.ShutdownTimeout = 0 }), want: []string{"--shutdown-timeout must be positive"}},
		{name: "rate limit with burst", cfg: embedded(func(c *Config) { c.RateLimit, c.RateBurst = 0.5, 2 })},
		{name: "negative rate limit", cfg: embedded(func(c *Config) { c.RateLimit = -1 }), want: []string{"--rate-limit must be calls per second per caller from 0 (off) to 1000000 (got -1)"}},
		{name: "NaN rate limit", cfg: embedded(func(c *Config) { c.RateLimit = math.NaN() }), want: []string{"--rate-limit must be calls per second"}},
		{name: "rate limit without burst", cfg: embedded(func(c *Config) { c.RateLimit = 7.5 }), want: []string{"--rate-limit needs --rate-burst of at least 1 (calls a caller may make at once), e.g. --rate-burst 8"}},
		{name: "negative burst", cfg: embedded(func(c *Config) { c.RateBurst = -1 }), want: []string{"--rate-burst must be from 0 to 1000000 (got -1)"}},
		{name: "concurrency caps off", cfg: embedded(func(c *Config) { c.MaxConcurrentCalls, c.MaxConcurrentFiles = 0, 0 })},
		{name: "negative concurrent calls", cfg: embedded(func(c *Config) { c.MaxConcurrentCalls = -1 }), want: []string{"--max-concurrent-calls must be from 0 (off) to 1000000 (got -1)"}},
		{name: "negative concurrent files", cfg: embedded(func(c *Config) { c.MaxConcurrentFiles = -1 }), want: []string{"--max-concurrent-files must be from 0 (off) to 1000000 (got -1), e.g. 64"}},
		{name: "zero upstream call timeout", cfg: embedded(func(c *Config) { c.UpstreamCallTimeout = 0 }), want: []string{"--upstream-call-timeout must be positive and at most 5m0s (got 0s), e.g. 30s"}},
		{name: "upstream call timeout over the cap", cfg: embedded(func(c *Config) { c.UpstreamCallTimeout = time.Hour }), want: []string{"--upstream-call-timeout must be positive and at most 5m0s (got 1h0m0s), e.g. 30s"}},
		{name: "zero stream idle timeout", cfg: embedded(func(c *Config) { c.StreamIdleTimeout = 0 }), want: []string{"--stream-idle-timeout must be positive and at most 10m0s (got 0s), e.g. 30s"}},
		{name: "reconciler off in development", cfg: embedded(func(c *Config) { c.ReconcileInterval = 0 })},
		{name: "reconcile interval too short", cfg: embedded(func(c *Config) { c.ReconcileInterval = time.Millisecond }), want: []string{"--reconcile-interval must be 0 (off, development only) or from 1s to 1h0m0s (got 1ms), e.g. 30s"}},
		{name: "stream idle timeout over the cap", cfg: embedded(func(c *Config) { c.StreamIdleTimeout = time.Hour }), want: []string{"--stream-idle-timeout must be positive and at most 10m0s (got 1h0m0s), e.g. 30s"}},
		{name: "unsupported database", cfg: embedded(func(c *Config) { c.DatabaseURL = "mysql://u:hunter2@db/recovery" }), want: []string{`--database-url scheme "mysql" is not supported`}},
		{name: "database not a URL", cfg: embedded(func(c *Config) { c.DatabaseURL = "host=db password=hunter2" }), want: []string{"--database-url is not a URL"}},

		{name: "token file needs upstream", cfg: embedded(func(c *Config) { c.UpstreamTokenFile = "/run/secrets/token" }), want: []string{"--upstream-token-file is set but --upstream-url is not"}},
		{name: "keys need upstream", cfg: embedded(func(c *Config) { c.JWKSURL = "https://keys.example/jwks.json" }), want: []string{"need --upstream-url"}},
		{name: "upstream needs token", cfg: remote(func(c *Config) { c.UpstreamTokenFile = "" }), want: []string{"--upstream-token-file is required with --upstream-url", "RECOVERY_UPSTREAM_TOKEN_FILE"}},
		{name: "upstream not a URL", cfg: remote(func(c *Config) { c.UpstreamURL = "upstream.example" }), want: []string{`--upstream-url "upstream.example" is not an absolute https:// URL`}},
		{name: "upstream URL with credentials, in development too", cfg: remote(func(c *Config) { c.UpstreamURL = "https://partner:hunter2@upstream.example" }),
			want: []string{"--upstream-url carries user info (user:password@): remove it"}},
		{name: "unparsable JWKS URL with credentials", cfg: remote(func(c *Config) { c.JWKSURL = "https://partner:hunter2@keys.example:port/jwks.json" }),
			want: []string{"--jwks-url carries user info", `--jwks-url "[redacted]" is not an absolute https:// URL`}, lines: 2},
		{name: "upstream wrong scheme", cfg: remote(func(c *Config) { c.UpstreamURL = "ftp://upstream.example" }), want: []string{"is not an absolute https:// URL"}},
		{name: "upstream needs verification keys", cfg: remote(func(c *Config) { c.JWKSURL = "" }), want: []string{"set --jwks-url or --verification-keys-file"}},
		{name: "known host suggests its JWKS", cfg: remote(func(c *Config) { c.JWKSURL, c.UpstreamURL = "", "https://service.uat-keys.coincover.com" }), want: []string{"--jwks-url https://policies.uat-keys.coincover.com/.well-known/jwks.json"}},
		{name: "only one key source", cfg: remote(func(c *Config) { c.VerificationKeysFile = "/etc/keys.pem" }), want: []string{"set only one of --jwks-url and --verification-keys-file"}},
		{name: "every problem at once", cfg: embedded(func(c *Config) {
			c.Listen, c.MaxFileBytes, c.Environment = "nowhere", -1, EnvProduction
		}), want: []string{"--listen", "--max-file-bytes", "--environment production needs a real upstream", "production refuses plaintext gRPC", "production needs caller authentication", "--registry-hmac-key-file is required in production"}, lines: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The process environment (GODEBUG, SSL_CERT_FILE) is not the
			// subject here: TestProductionGuard's is.
			err := tt.cfg.validate(envMap(nil))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.want)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Validate() = %q, missing %q", msg, w)
				}
			}
			lines := max(tt.lines, 1)
			if n := strings.Count(msg, "\n") + 1; n != lines {
				t.Errorf("Validate() has %d lines, want one per problem (%d):\n%s", n, lines, msg)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("Validate() echoes a database password: %q", msg)
			}
		})
	}
}

func TestConfigPrintsNoSecrets(t *testing.T) {
	tests := []struct {
		databaseURL string
		want        string
	}{
		{"postgres://recovery:hunter2@db.example:5432/recovery", "postgres://recovery:[redacted]@db.example:5432/recovery"},
		{"postgres://db.example/recovery?password=hunter2&sslmode=verify-full", "postgres://db.example/recovery?password=[redacted]&sslmode=verify-full"},
		{"postgres://recovery@db.example/recovery", "postgres://recovery@db.example/recovery"},
		{"host=db password=hunter2", "[redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.DatabaseURL = tt.databaseURL
			cfg.UpstreamTokenFile = "/run/secrets/token"

			var logged bytes.Buffer
			slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", cfg)
			for name, out := range map[string]string{"String": cfg.String(), "LogValue": logged.String()} {
				if strings.Contains(out, "hunter2") {
					t.Errorf("%s prints the password: %s", name, out)
				}
				if !strings.Contains(out, "/run/secrets/token") {
					t.Errorf("%s does not show the token file path: %s", name, out)
				}
			}
			if got := redactDatabaseURL(tt.databaseURL); got != tt.want {
				t.Errorf("redactDatabaseURL = %q, want %q", got, tt.want)
			}
			if !strings.Contains(cfg.String(), `database_url="`+tt.want+`"`) {
				t.Errorf("String() = %s, want database_url=%q", cfg.String(), tt.want)
			}
		})
	}
}
