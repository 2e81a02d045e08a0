package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/walletprovider/recoveryservice/cmd/recoveryd/app"
)

// runMainEnv, set to "1", makes the test binary run recoveryd's main with
// its arguments instead of the tests: a test re-executes itself this way to
// see exactly what an operator sees (stderr, exit code).
const runMainEnv = "RECOVERYD_TEST_RUN_MAIN"

// Lines of the production guard, as an operator reads them (app's tests
// check every line; this package checks that main prints them).
const (
	guardEmbedded      = "--environment production needs a real upstream: set --upstream-url and --upstream-token-file (the embedded sandbox is for development only)"
	guardNoHMACKey     = "--registry-hmac-key-file is required in production: a file of at least 32 random bytes (e.g. openssl rand -hex 32), the same for every replica; it keys the registry's idempotency hashes, so nothing derived from a plaintext is kept in clear"
	guardNoCallerAuth  = "production needs caller authentication: set --caller-tokens-file (bearer tokens) and/or --client-ca with --tls-cert (mTLS); without it anyone who reaches --listen may assign keys and store backups"
	guardPlaintextGRPC = "production refuses plaintext gRPC: set --tls-cert and --tls-key, or --tls-terminated-by-proxy when a proxy or service mesh terminates TLS in front of --listen; otherwise bearer tokens and recovery material cross the network in clear"
	guardGODEBUGPrefix = "GODEBUG weakens Go's certificate or TLS checks ("
	guardGODEBUGSuffix = "): production refuses x509 and TLS overrides; remove them (trust a private upstream CA with --upstream-ca-file instead)"
)

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	// NOTE: the process tests' binary is removed once every test is over.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		removeBuilt()
		os.Exit(code)
	}))
}

// envMap is a getenv over a fixed map.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// testCtx is the test's context, bounded so a hung child cannot hang CI.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestParseConfigPrecedence(t *testing.T) {
	def := app.DefaultConfig()
	with := func(f func(*app.Config)) app.Config {
		c := app.DefaultConfig()
		f(&c)
		return c
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want app.Config
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
				"RECOVERY_UPSTREAM_CALL_TIMEOUT":  "12s",
				"RECOVERY_RATE_LIMIT":             "2.5",
				"RECOVERY_RATE_BURST":             "5",
				"RECOVERY_MAX_CONCURRENT_CALLS":   "8",
				"RECOVERY_MAX_CONCURRENT_FILES":   "16",
				"RECOVERY_MAX_ACTIVE_CALLS":       "32",
				"RECOVERY_MAX_CONNECTIONS":        "50",
				"RECOVERY_STREAM_IDLE_TIMEOUT":    "45s",
				"RECOVERY_RECONCILE_INTERVAL":     "2m",
				"RECOVERY_ADMIN_LISTEN":           "127.0.0.1:9999",
				"RECOVERY_ADMIN_LISTEN_PUBLIC":    "true",
				"RECOVERY_CALLER_TOKENS_FILE":     "/etc/recoveryd/callers.json",
				"RECOVERY_TLS_CERT":               "/etc/recoveryd/tls.crt",
				"RECOVERY_TLS_KEY":                "/etc/recoveryd/tls.key",
				"RECOVERY_CLIENT_CA":              "/etc/recoveryd/client-ca.crt",
				"RECOVERY_CLIENT_TRUST_DOMAIN":    "prod.example",
				"RECOVERY_UPSTREAM_CA_FILE":       "/etc/recoveryd/upstream-ca.crt",
				"RECOVERY_REGISTRY_HMAC_KEY_FILE": "/etc/recoveryd/registry-hmac.key",
			},
			want: app.Config{
				Listen: "127.0.0.1:6000", DataDir: "/var/lib/recoveryd", Environment: "production",
				LogLevel: slog.LevelDebug, UpstreamURL: "https://upstream.example",
				UpstreamTokenFile: "/run/secrets/token", JWKSURL: "https://keys.example/jwks.json",
				VerificationKeysFile: "/etc/keys.pem", DatabaseURL: "postgres://db.example/recovery",
				MaxFileBytes: 1024, ShutdownTimeout: 5 * time.Second, AdminListen: "127.0.0.1:9999",
				AdminListenPublic:   true,
				UpstreamCallTimeout: 12 * time.Second,
				RateLimit:           2.5, RateBurst: 5, MaxConcurrentCalls: 8, MaxConcurrentFiles: 16, MaxConnections: 50,
				MaxActiveCalls:   32,
				CallerTokensFile: "/etc/recoveryd/callers.json", TLSCert: "/etc/recoveryd/tls.crt", TLSKey: "/etc/recoveryd/tls.key",
				StreamIdleTimeout: 45 * time.Second,
				ReconcileInterval: 2 * time.Minute,
				ClientCA:          "/etc/recoveryd/client-ca.crt", ClientTrustDomain: "prod.example", UpstreamCAFile: "/etc/recoveryd/upstream-ca.crt",
				RegistryHMACKeyFile: "/etc/recoveryd/registry-hmac.key",
			},
		},
		{
			name: "flag wins over environment",
			args: []string{"--listen", "127.0.0.1:7000", "-max-file-bytes=2048", "--log-level=warn"},
			env:  map[string]string{"RECOVERY_LISTEN": "127.0.0.1:6000", "RECOVERY_MAX_FILE_BYTES": "1024", "RECOVERY_LOG_LEVEL": "debug"},
			want: with(func(c *app.Config) { c.Listen, c.MaxFileBytes, c.LogLevel = "127.0.0.1:7000", 2048, slog.LevelWarn }),
		},
		{
			name: "flag set to its default still wins",
			args: []string{"--listen", def.Listen},
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
			got, _, err := parseConfig(tt.args, envMap(tt.env), io.Discard)
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
			_, _, err := parseConfig(tt.args, envMap(tt.env), io.Discard)
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
	_, _, err := parseConfig([]string{"-help"}, envMap(nil), &usage)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseConfig(-help) = %v, want flag.ErrHelp", err)
	}
	for _, v := range []string{
		"RECOVERY_LISTEN", "RECOVERY_DATA_DIR", "RECOVERY_ENVIRONMENT", "RECOVERY_LOG_LEVEL",
		"RECOVERY_UPSTREAM_URL", "RECOVERY_UPSTREAM_TOKEN_FILE", "RECOVERY_JWKS_URL",
		"RECOVERY_VERIFICATION_KEYS_FILE", "RECOVERY_DATABASE_URL", "RECOVERY_MAX_FILE_BYTES",
		"RECOVERY_SHUTDOWN_TIMEOUT", "RECOVERY_UPSTREAM_CALL_TIMEOUT", "RECOVERY_CALLER_TOKENS_FILE", "RECOVERY_TLS_CERT", "RECOVERY_TLS_KEY",
		"RECOVERY_CLIENT_CA", "RECOVERY_UPSTREAM_CA_FILE",
	} {
		if !strings.Contains(usage.String(), v) {
			t.Errorf("usage does not name %s:\n%s", v, usage.String())
		}
	}
}

// TestMainRefusesUnsafeProduction runs recoveryd's main as a process, with
// the process environment's GODEBUG: it exits with the usage code before
// starting anything, printing one line per problem.
func TestMainRefusesUnsafeProduction(t *testing.T) {
	cmd := exec.CommandContext(testCtx(t), os.Args[0], "--environment", "production", "--data-dir", t.TempDir()) //nolint:gosec // this test binary, re-executed.
	cmd.Env = []string{runMainEnv + "=1", "GODEBUG=x509negativeserial=1", "PATH=" + os.Getenv("PATH")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitUsage {
		t.Fatalf("recoveryd --environment production = %v, want exit code %d\nstderr:\n%s", err, exitUsage, stderr.String())
	}
	want := strings.Join([]string{
		"recoveryd: configuration error:",
		guardEmbedded,
		guardPlaintextGRPC,
		guardNoCallerAuth,
		guardGODEBUGPrefix + "GODEBUG x509negativeserial=1" + guardGODEBUGSuffix,
		guardNoHMACKey,
		"",
	}, "\n")
	if stderr.String() != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), want)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %s", stdout.String())
	}
}

// TestNoFlagTakesASecret: the security flags take paths, and the
// configuration dump shows the paths, never a file's content.
func TestNoFlagTakesASecret(t *testing.T) {
	// A real callers file: the dump must name it without reading it.
	callers := filepath.Join(t.TempDir(), "callers.json")
	const secret = "a-bearer-token-digest-in-the-file"
	if err := os.WriteFile(callers, []byte(`{"callers":[{"token_sha256":"`+secret+`"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := parseConfig([]string{"--caller-tokens-file", callers}, envMap(map[string]string{
		"RECOVERY_TLS_CERT": "/etc/recoveryd/tls.crt", "RECOVERY_TLS_KEY": "/etc/recoveryd/tls.key",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := cfg.String()
	for _, want := range []string{`caller_tokens_file="` + callers + `"`, `tls_cert="/etc/recoveryd/tls.crt"`, `tls_key="/etc/recoveryd/tls.key"`} {
		if !strings.Contains(out, want) {
			t.Errorf("config dump lacks %s: %s", want, out)
		}
	}
	if strings.Contains(out, secret) || strings.Contains(out, "token_sha256") {
		t.Errorf("config dump shows a file's content: %s", out)
	}
	var usage strings.Builder
	if _, _, err := parseConfig([]string{"-help"}, envMap(nil), &usage); err == nil {
		t.Fatal("-help did not stop parsing")
	}
	for _, line := range strings.Split(usage.String(), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.Contains(name, "token") && !strings.HasSuffix(name, "-file") {
			t.Errorf("flag %s looks like it takes a token's value: secrets come from files", name)
		}
	}
}

// TestREADMEDocumentsEveryFlag: every flag recoveryd accepts has a row in
// the README's configuration table, with its environment variable.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var usage bytes.Buffer
	if _, _, err := parseConfig([]string{"-help"}, envMap(nil), &usage); err == nil {
		t.Fatal("-help did not stop parsing")
	}
	flags := regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(usage.String(), -1)
	if len(flags) == 0 {
		t.Fatalf("no flags in usage:\n%s", usage.String())
	}
	for _, f := range flags {
		row := "| `--" + f[1] + "` | `" + app.EnvName(f[1]) + "` |"
		if f[1] == checkConfigFlag || f[1] == verifyAuditFlag {
			row = "| `--" + f[1] + "` | — |" // no variable, on purpose
		}
		if !bytes.Contains(readme, []byte(row)) {
			t.Errorf("README's configuration table lacks the row %s", row)
		}
	}
}

// runMain runs recoveryd's main as a process with args and only the given
// environment, and returns its exit code, stdout and stderr.
func runMain(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.CommandContext(testCtx(t), os.Args[0], args...) //nolint:gosec // this test binary, re-executed.
	cmd.Env = append([]string{runMainEnv + "=1", "PATH=" + os.Getenv("PATH")}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		return exit.ExitCode(), out.String(), errOut.String()
	}
	if err != nil {
		t.Fatalf("running recoveryd %v: %v", args, err)
	}
	return 0, out.String(), errOut.String()
}

// TestCheckConfig: --check-config validates like a start does, prints one
// line per problem, exits 2 or 0, and starts nothing — not even the data
// directory a start would create.
func TestCheckConfig(t *testing.T) {
	t.Run("fine", func(t *testing.T) {
		dataDir := filepath.Join(t.TempDir(), "data")
		code, stdout, stderr := runMain(t, []string{"RECOVERY_DATA_DIR=" + dataDir}, "--check-config")
		if code != 0 {
			t.Fatalf("exit code %d, want 0\nstderr:\n%s", code, stderr)
		}
		if stdout != "recoveryd: configuration OK (environment development)\n" || stderr != "" {
			t.Errorf("stdout %q, stderr %q", stdout, stderr)
		}
		if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("--check-config touched the data directory (stat: %v): it must start nothing", err)
		}
	})
	t.Run("problems", func(t *testing.T) {
		dataDir := filepath.Join(t.TempDir(), "data")
		code, stdout, stderr := runMain(t, []string{"RECOVERY_ENVIRONMENT=production"}, "--check-config", "--data-dir", dataDir)
		if code != exitUsage {
			t.Fatalf("exit code %d, want %d\nstderr:\n%s", code, exitUsage, stderr)
		}
		want := "recoveryd: configuration error:\n" + guardEmbedded + "\n" + guardPlaintextGRPC + "\n" + guardNoCallerAuth + "\n" + guardNoHMACKey + "\n"
		if stderr != want || stdout != "" {
			t.Errorf("stderr:\n%s\nwant:\n%s\nstdout: %q", stderr, want, stdout)
		}
		if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("--check-config touched the data directory (stat: %v): it must start nothing", err)
		}
	})
	t.Run("no environment fallback", func(t *testing.T) {
		// A RECOVERY_CHECK_CONFIG left in a ConfigMap must not turn a
		// replica into a process that validates and exits.
		_, mode, err := parseConfig(nil, envMap(map[string]string{"RECOVERY_CHECK_CONFIG": "true"}), io.Discard)
		if err != nil || mode != modeServe {
			t.Errorf("parseConfig with RECOVERY_CHECK_CONFIG=true = %v, %v; want modeServe", mode, err)
		}
		_, mode, err = parseConfig([]string{"--check-config"}, envMap(nil), io.Discard)
		if err != nil || mode != modeCheckConfig {
			t.Errorf("parseConfig(--check-config) = %v, %v; want modeCheckConfig", mode, err)
		}
	})
}
