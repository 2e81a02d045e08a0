package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/service/registry/registrytest"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// TestDatabaseURLFileValidation: --database-url-file must hold one
// postgres:// URL, is exclusive with --database-url, and no refusal quotes
// the file's content (it holds a password).
func TestDatabaseURLFileValidation(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "  postgres://recoveryd:hunter2@db.example/recovery?sslmode=verify-full\n")
	tests := []struct {
		name string
		mut  func(*Config)
		want string // "" is valid
	}{
		{"one URL, whitespace around it", func(c *Config) { c.DatabaseURLFile = good }, ""},
		{"missing", func(c *Config) { c.DatabaseURLFile = filepath.Join(dir, "missing") },
			"--database-url-file " + filepath.Join(dir, "missing") + " does not exist"},
		{"empty", func(c *Config) { c.DatabaseURLFile = write("empty", "\n") },
			"--database-url-file " + filepath.Join(dir, "empty") + " is empty: write one postgres://user:password@host/db?sslmode=verify-full URL in it"},
		{"two lines", func(c *Config) {
			c.DatabaseURLFile = write("two", "postgres://a:hunter2@db/x\npostgres://b:hunter2@db/y\n")
		},
			"--database-url-file " + filepath.Join(dir, "two") + " holds more than one line: write one postgres:// URL in it"},
		{"another scheme", func(c *Config) { c.DatabaseURLFile = write("mysql", "mysql://root:hunter2@db/x") },
			"--database-url-file " + filepath.Join(dir, "mysql") + `: --database-url scheme "mysql" is not supported: use postgres://user@host/db, or leave it empty for SQLite under --data-dir`},
		{"both flags", func(c *Config) { c.DatabaseURLFile, c.DatabaseURL = good, "postgres://db.example/recovery" },
			"set only one of --database-url and --database-url-file (the file for a URL with a password)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mut(&cfg)
			err := cfg.validate(envMap(nil))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q\nwant %q", got, tt.want)
			}
			if strings.Contains(got+cfg.String(), "hunter2") {
				t.Errorf("the password shows: %q / %s", got, cfg.String())
			}
		})
	}
}

// TestRunOnPostgreSQLFromURLFile: with --database-url-file, recoveryd
// connects to the PostgreSQL the file names (password included) and serves
// from it; neither the log nor the configuration dump shows the password.
func TestRunOnPostgreSQLFromURLFile(t *testing.T) {
	log, logs := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	dbURL, password := withPassword(t, registrytest.Postgres(t))
	urlFile := filepath.Join(t.TempDir(), "database-url")
	if err := os.WriteFile(urlFile, []byte(dbURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := replicaConfig(t, up, "")
	cfg.DatabaseURLFile = urlFile
	stderr := &sandboxtest.LogBuffer{Mirror: t.Output()}
	srv := startReady(t, cfg, log, Options{Stderr: stderr})

	key := assignKey(t, testCtx(t), srv.client, "user-via-url-file")
	if got := queryColumn(t, dbURL, `SELECT key_id FROM keys WHERE key_id = '`+key.GetKeyId()+`'`); len(got) != 1 {
		t.Errorf("key %s is not in the PostgreSQL the file names", key.GetKeyId())
	}
	if !strings.Contains(logs.String(), `"database_url_file":"`+urlFile+`"`) {
		t.Error("the configuration dump does not name --database-url-file")
	}
	for name, out := range map[string]string{"log": logs.String(), "stderr": stderr.String()} {
		if strings.Contains(out, password) {
			t.Errorf("the %s shows the database password", name)
		}
	}
}
