package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// envMap is a getenv over a fixed map.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfigPrecedence(t *testing.T) {
	def := defaultConfig()
	with := func(f func(*Config)) Config {
		c := defaultConfig()
		f(&c)
		return c
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want Config
	}{
		{name: "defaults", want: def},
		{
			name: "environment fills unset flags",
			env: map[string]string{
				"RECOVERY_LISTEN":                 "127.0.0.1:6000",
				"RECOVERY_DATA_DIR":               "/var/lib/recoveryd",
				"RECOVERY_ENVIRONMENT":            "production",
				"RECOVERY_LOG_LEVEL":              "debug",
				"RECOVERY_UPSTREAM_URL":           "https://upstream.example",
				"RECOVERY_UPSTREAM_TOKEN_FILE":    "/run/secrets/token",
				"RECOVERY_JWKS_URL":               "https://keys.example/jwks.json",
				"RECOVERY_VERIFICATION_KEYS_FILE": "/etc/keys.pem",
				"RECOVERY_DATABASE_URL":           "postgres://db.example/recovery",
				"RECOVERY_MAX_FILE_BYTES":         "1024",
				"RECOVERY_SHUTDOWN_TIMEOUT":       "5s",
				"RECOVERY_ADMIN_LISTEN":           "127.0.0.1:9999",
				"RECOVERY_CALLER_TOKENS_FILE":     "/etc/recoveryd/callers.json",
				"RECOVERY_TLS_CERT":               "/etc/recoveryd/tls.crt",
				"RECOVERY_TLS_KEY":                "/etc/recoveryd/tls.key",
				"RECOVERY_CLIENT_CA":              "/etc/recoveryd/client-ca.crt",
				"RECOVERY_UPSTREAM_CA_FILE":       "/etc/recoveryd/upstream-ca.crt",
			},
			want: Config{
				Listen: "127.0.0.1:6000", DataDir: "/var/lib/recoveryd", Environment: "production",
				LogLevel: slog.LevelDebug, UpstreamURL: "https://upstream.example",
				UpstreamTokenFile: "/run/secrets/token", JWKSURL: "https://keys.example/jwks.json",
				VerificationKeysFile: "/etc/keys.pem", DatabaseURL: "postgres://db.example/recovery",
				MaxFileBytes: 1024, ShutdownTimeout: 5 * time.Second, AdminListen: "127.0.0.1:9999",
				CallerTokensFile: "/etc/recoveryd/callers.json", TLSCert: "/etc/recoveryd/tls.crt", TLSKey: "/etc/recoveryd/tls.key",
				ClientCA: "/etc/recoveryd/client-ca.crt", UpstreamCAFile: "/etc/recoveryd/upstream-ca.crt",
			},
		},
		{
			name: "flag wins over environment",
			args: []string{"--listen", "127.0.0.1:7000", "-max-file-bytes=2048", "--log-level=warn"},
			env:  map[string]string{"RECOVERY_LISTEN": "127.0.0.1:6000", "RECOVERY_MAX_FILE_BYTES": "1024", "RECOVERY_LOG_LEVEL": "debug"},
			want: with(func(c *Config) { c.Listen, c.MaxFileBytes, c.LogLevel = "127.0.0.1:7000", 2048, slog.LevelWarn }),
		},
		{
			name: "flag set to its default still wins",
			args: []string{"--listen", defaultListen},
			env:  map[string]string{"RECOVERY_LISTEN": "127.0.0.1:6000"},
			want: def,
		},
		{
			name: "empty variable counts as unset",
			env:  map[string]string{"RECOVERY_DATA_DIR": "", "RECOVERY_SHUTDOWN_TIMEOUT": ""},
			want: def,
		},
		{
			name: "variables without the prefix are ignored",
			env:  map[string]string{"LISTEN": "127.0.0.1:6000", "DATA_DIR": "/elsewhere"},
			want: def,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig(tt.args, envMap(tt.env), io.Discard)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr []string
	}{
		{name: "bad number in environment", env: map[string]string{"RECOVERY_MAX_FILE_BYTES": "ten megs"}, wantErr: []string{"RECOVERY_MAX_FILE_BYTES"}},
		{name: "bad duration in environment", env: map[string]string{"RECOVERY_SHUTDOWN_TIMEOUT": "soon"}, wantErr: []string{"RECOVERY_SHUTDOWN_TIMEOUT"}},
		{name: "bad level in environment", env: map[string]string{"RECOVERY_LOG_LEVEL": "loud"}, wantErr: []string{"RECOVERY_LOG_LEVEL"}},
		{name: "every bad variable reported", env: map[string]string{"RECOVERY_LOG_LEVEL": "loud", "RECOVERY_SHUTDOWN_TIMEOUT": "soon"}, wantErr: []string{"RECOVERY_LOG_LEVEL", "RECOVERY_SHUTDOWN_TIMEOUT"}},
		{name: "bad flag value", args: []string{"--max-file-bytes", "x"}, wantErr: []string{"max-file-bytes"}},
		{name: "unknown flag", args: []string{"--upstream"}, wantErr: []string{"upstream"}},
		{name: "positional argument", args: []string{"serve"}, wantErr: []string{`unexpected argument "serve"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, envMap(tt.env), io.Discard)
			if err == nil {
				t.Fatal("parseConfig succeeded; want an error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestParseConfigHelpNamesEveryVariable(t *testing.T) {
	var usage bytes.Buffer
	_, err := parseConfig([]string{"-help"}, envMap(nil), &usage)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseConfig(-help) = %v, want flag.ErrHelp", err)
	}
	for _, v := range []string{
		"RECOVERY_LISTEN", "RECOVERY_DATA_DIR", "RECOVERY_ENVIRONMENT", "RECOVERY_LOG_LEVEL",
		"RECOVERY_UPSTREAM_URL", "RECOVERY_UPSTREAM_TOKEN_FILE", "RECOVERY_JWKS_URL",
		"RECOVERY_VERIFICATION_KEYS_FILE", "RECOVERY_DATABASE_URL", "RECOVERY_MAX_FILE_BYTES",
		"RECOVERY_SHUTDOWN_TIMEOUT", "RECOVERY_CALLER_TOKENS_FILE", "RECOVERY_TLS_CERT", "RECOVERY_TLS_KEY",
		"RECOVERY_CLIENT_CA", "RECOVERY_UPSTREAM_CA_FILE",
	} {
		if !strings.Contains(usage.String(), v) {
			t.Errorf("usage does not name %s:\n%s", v, usage.String())
		}
	}
}

func TestValidate(t *testing.T) {
	remote := func(f func(*Config)) Config {
		c := defaultConfig()
		c.UpstreamURL = "https://upstream.example"
		c.UpstreamTokenFile = "/run/secrets/token"
		c.JWKSURL = "https://keys.example/jwks.json"
		if f != nil {
			f(&c)
		}
		return c
	}
	embedded := func(f func(*Config)) Config {
		c := defaultConfig()
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
		{name: "defaults: embedded sandbox", cfg: defaultConfig()},
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
		{name: "unsupported database", cfg: embedded(func(c *Config) { c.DatabaseURL = "mysql://u:hunter2@db/recovery" }), want: []string{`--database-url scheme "mysql" is not supported`}},
		{name: "database not a URL", cfg: embedded(func(c *Config) { c.DatabaseURL = "host=db password=hunter2" }), want: []string{"--database-url is not a URL"}},

		{name: "token file needs upstream", cfg: embedded(func(c *Config) { c.UpstreamTokenFile = "/run/secrets/token" }), want: []string{"--upstream-token-file is set but --upstream-url is not"}},
		{name: "keys need upstream", cfg: embedded(func(c *Config) { c.JWKSURL = "https://keys.example/jwks.json" }), want: []string{"need --upstream-url"}},
		{name: "upstream needs token", cfg: remote(func(c *Config) { c.UpstreamTokenFile = "" }), want: []string{"--upstream-token-file is required with --upstream-url", "RECOVERY_UPSTREAM_TOKEN_FILE"}},
		{name: "upstream not a URL", cfg: remote(func(c *Config) { c.UpstreamURL = "upstream.example" }), want: []string{`--upstream-url "upstream.example" is not an absolute https:// URL`}},
		{name: "upstream wrong scheme", cfg: remote(func(c *Config) { c.UpstreamURL = "ftp://upstream.example" }), want: []string{"is not an absolute https:// URL"}},
		{name: "upstream needs verification keys", cfg: remote(func(c *Config) { c.JWKSURL = "" }), want: []string{"set --jwks-url or --verification-keys-file"}},
		{name: "known host suggests its JWKS", cfg: remote(func(c *Config) { c.JWKSURL, c.UpstreamURL = "", "https://service.uat-keys.coincover.com" }), want: []string{"--jwks-url https://policies.uat-keys.coincover.com/.well-known/jwks.json"}},
		{name: "only one key source", cfg: remote(func(c *Config) { c.VerificationKeysFile = "/etc/keys.pem" }), want: []string{"set only one of --jwks-url and --verification-keys-file"}},
		{name: "every problem at once", cfg: embedded(func(c *Config) {
			c.Listen, c.MaxFileBytes, c.Environment = "nowhere", -1, envProduction
		}), want: []string{"--listen", "--max-file-bytes", "--environment production needs a real upstream", "production needs caller authentication"}, lines: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
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
			cfg := defaultConfig()
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
