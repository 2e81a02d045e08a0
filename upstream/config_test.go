package upstream

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{BaseURL: SandboxBaseURL, Token: "abc.def-ghi"}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // substring; "" = valid
	}{
		{"sandbox", func(*Config) {}, ""},
		{"production with path", func(c *Config) { c.BaseURL = ProductionBaseURL + "/partner-api/" }, ""},
		{"http with AllowHTTP", func(c *Config) { c.BaseURL = "http://127.0.0.1:8080"; c.AllowHTTP = true }, ""},
		{"missing URL", func(c *Config) { c.BaseURL = "" }, "base URL is required"},
		{"relative URL", func(c *Config) { c.BaseURL = "service.keys.coincover.com" }, "not absolute"},
		{"http refused", func(c *Config) { c.BaseURL = "http://service.keys.coincover.com" }, "uses http://"},
		{"ftp", func(c *Config) { c.BaseURL = "ftp://service.keys.coincover.com" }, `scheme "ftp"`},
		{"userinfo", func(c *Config) { c.BaseURL = "https://user:pw@service.keys.coincover.com" }, "must not carry credentials"},
		{"query", func(c *Config) { c.BaseURL = SandboxBaseURL + "?token=x" }, "query string"},
		{"empty query", func(c *Config) { c.BaseURL = SandboxBaseURL + "?" }, "query string"},
		{"fragment", func(c *Config) { c.BaseURL = SandboxBaseURL + "#x" }, "fragment"},
		{"no host", func(c *Config) { c.BaseURL = "https:///v1" }, "no host"},
		{"bad URL", func(c *Config) { c.BaseURL = "https://[::1" }, "not a valid URL"},
		{"no token", func(c *Config) { c.Token = "" }, "token is required"},
		{"token with space", func(c *Config) { c.Token = "abc def" }, "whitespace"},
		{"token with newline", func(c *Config) { c.Token = "abc\ndef" }, "whitespace"},
		{"negative call timeout", func(c *Config) { c.CallTimeout = -time.Second }, "call timeout"},
		{"negative file timeout", func(c *Config) { c.FileTimeout = -time.Second }, "file timeout"},
		{"user agent newline", func(c *Config) { c.UserAgent = "x\r\nX-Evil: 1" }, "user agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			err := cfg.Validate()
			_, newErr := NewClient(cfg)
			if tt.wantErr == "" {
				if err != nil || newErr != nil {
					t.Fatalf("Validate() = %v, NewClient() = %v; want both nil", err, newErr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
			if newErr == nil || newErr.Error() != err.Error() {
				t.Fatalf("NewClient() = %v, want the Validate error", newErr)
			}
			if cfg.Token != "" && strings.Contains(err.Error(), cfg.Token) {
				t.Fatalf("error %q echoes the token", err)
			}
		})
	}
}

func TestConfigNeverPrintsToken(t *testing.T) {
	cfg := Config{BaseURL: SandboxBaseURL, Token: testToken}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v", &cfg), logged.String()} {
		if strings.Contains(s, testToken) {
			t.Errorf("printed config %q holds the token", s)
		}
		if !strings.Contains(s, "[redacted]") || !strings.Contains(s, SandboxBaseURL) {
			t.Errorf("printed config %q should show the URL and [redacted]", s)
		}
	}
}

func TestLoadToken(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string
		wantErr string
	}{
		{"plain", "tok-123", "tok-123", ""},
		{"trailing newline", "tok-123\n", "tok-123", ""},
		{"crlf", "tok-123\r\n", "tok-123", ""},
		{"trailing space", "tok-123 \n", "tok-123", ""},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", ""},
		{"empty", "", "", "is empty"},
		{"only newline", "\n\n", "", "is empty"},
		{"two lines", "tok-123\ntok-456\n", "", "more than one line"},
		{"inner space", "secret-a secret-b", "", "whitespace"},
		{"too large", strings.Repeat("a", maxTokenFile+1), "", "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadToken(path)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("LoadToken = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadToken error = %v, want containing %q", err, tt.wantErr)
			}
			if got != "" {
				t.Fatalf("LoadToken returned %q with an error", got)
			}
			for _, word := range strings.Fields(tt.content) {
				if len(word) >= 5 && strings.Contains(err.Error(), word[:5]) {
					t.Fatalf("error %q echoes the file content", err)
				}
			}
		})
	}
	if _, err := LoadToken(filepath.Join(t.TempDir(), "missing")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want a not-exist error", err)
	}
}
