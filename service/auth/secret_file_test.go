package auth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/service/auth"
)

func TestCheckSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("not-a-real-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// NOTE: Chmod, not WriteFile's mode, which the umask narrows.
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	private := write("private", 0o600)
	ownerOnly := write("owner-read-only", 0o400)
	worldReadable := write("world-readable", 0o644)
	groupReadable := write("group-readable", 0o640)
	link := filepath.Join(dir, "link-to-world-readable")
	if err := os.Symlink(worldReadable, link); err != nil {
		t.Fatal(err)
	}
	privateLink := filepath.Join(dir, "link-to-private")
	if err := os.Symlink(private, privateLink); err != nil {
		t.Fatal(err)
	}

	for _, p := range []string{private, ownerOnly, privateLink} {
		if err := auth.CheckSecretFile(p); err != nil {
			t.Errorf("CheckSecretFile(%s) = %v, want nil", filepath.Base(p), err)
		}
	}
	tests := map[string]string{
		worldReadable:                 "has permissions 0644, which let group or others access a secret",
		link:                          "has permissions 0644",
		filepath.Join(dir, "missing"): "cannot be opened",
		dir:                           "is not a regular file",
	}
	// A group-readable file passes only when root owns it: the test's
	// files are root's when it runs as root (as make test does in CI).
	if os.Geteuid() == 0 {
		if err := auth.CheckSecretFile(groupReadable); err != nil {
			t.Errorf("CheckSecretFile(root-owned 0640) = %v, want nil", err)
		}
		if err := os.Chown(groupReadable, 65532, 65532); err != nil {
			t.Fatal(err)
		}
	}
	tests[groupReadable] = "has permissions 0640"
	for p, want := range tests {
		err := auth.CheckSecretFile(p)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("CheckSecretFile(%s) = %v, want an error naming the file and %q", filepath.Base(p), err, want)
		}
		if err != nil && strings.Contains(err.Error(), "not-a-real-secret") {
			t.Errorf("CheckSecretFile(%s) echoes the content: %v", filepath.Base(p), err)
		}
	}
}
