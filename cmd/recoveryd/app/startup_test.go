package app

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartupFailures: a run that cannot start says why, in words a person
// can act on, without leaking secrets, and returns instead of serving.
func TestStartupFailures(t *testing.T) {
	busy, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	aFile := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(aFile, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)

	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"invalid configuration", func(c *Config) { c.Environment = "staging" },
			`invalid configuration:` + "\n" + `--environment "staging"`},
		{"data dir is a file", func(c *Config) { c.UpstreamURL, c.UpstreamTokenFile, c.JWKSURL, c.DataDir = "", "", "", aFile },
			"creating --data-dir"},
		{"unreachable PostgreSQL", func(c *Config) { c.DatabaseURL = "postgres://recovery:hunter2@127.0.0.1:1/recovery?connect_timeout=5" },
			"opening the PostgreSQL registry postgres://recovery:[redacted]@127.0.0.1:1/recovery"},
		{"missing token file", func(c *Config) { c.UpstreamTokenFile = filepath.Join(t.TempDir(), "missing") },
			"reading upstream token file"},
		{"missing verification keys file", func(c *Config) { c.JWKSURL, c.VerificationKeysFile = "", filepath.Join(t.TempDir(), "missing.pem") },
			"configuring the verification keys"},
		{"listen address in use", func(c *Config) { c.Listen = busy.Addr().String() },
			"listening on --listen " + busy.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := remoteConfig(t, up, t.TempDir())
			tt.mutate(&cfg)
			err := Run(context.Background(), cfg, log, Options{})
			if err == nil {
				t.Fatal("run succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run() = %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("run() error leaks the database password: %q", err)
			}
		})
	}
}
