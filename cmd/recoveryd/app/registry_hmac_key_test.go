package app

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRegistryHMACKey: development makes a 0600 key under --data-dir once
// and reads the same one on every start; a key file is held to the secret
// file rule and to a minimum length, by Validate, in every environment.
func TestRegistryHMACKey(t *testing.T) {
	t.Run("development key under the data dir", func(t *testing.T) {
		c := DefaultConfig()
		c.DataDir = filepath.Join(t.TempDir(), "data")
		first, err := c.registryHMACKey()
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(filepath.Join(c.DataDir, registryHMACKeyFileName))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("development key mode %04o, want 0600", info.Mode().Perm())
		}
		if len(first) < minRegistryHMACKeyBytes {
			t.Errorf("development key of %d bytes, want at least %d", len(first), minRegistryHMACKeyBytes)
		}
		again, err := c.registryHMACKey()
		if err != nil || !bytes.Equal(first, again) {
			t.Errorf("second start read another key (%v): idempotency keys would not match across a restart", err)
		}
	})

	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.key", strings.Repeat("ab", 32)+"\n", 0o600)
	tests := []struct {
		name string
		path string
		want string // "" means accepted
	}{
		{"64 hex characters, owner only", good, ""},
		{"too short", write("short.key", "0123456789abcdef\n", 0o600), "holds a key of 16 bytes: use at least 32"},
		{"readable by others", write("shared.key", strings.Repeat("ab", 32), 0o644), "which let group or others access a secret"},
		{"missing", filepath.Join(dir, "none.key"), "cannot be opened"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.RegistryHMACKeyFile = tt.path
			err := c.validate(envMap(nil))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), "--registry-hmac-key-file "+tt.path) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: %v, want a line naming --registry-hmac-key-file %s that says %q", err, tt.path, tt.want)
			}
			if tt.want == "" {
				key, err := c.registryHMACKey()
				if err != nil || string(key) != strings.Repeat("ab", 32) {
					t.Errorf("registryHMACKey = %q, %v; want the file's content without its newline", key, err)
				}
			}
		})
	}
}

// writeRegistryHMACKey writes a registry HMAC key file (0600) for a test
// and returns its path.
func writeRegistryHMACKey(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "registry-hmac.key")
	if err := os.WriteFile(p, []byte(strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
