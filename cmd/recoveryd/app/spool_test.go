package app

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStartRemovesSpoolLeftovers: the SecureFile spool files a killed
// process left under --data-dir are removed when recoveryd starts again,
// and the spool directory is its owner's alone.
func TestStartRemovesSpoolLeftovers(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	dataDir := t.TempDir()
	spool := filepath.Join(dataDir, spoolDirName)
	if err := os.MkdirAll(spool, 0o750); err != nil { // wider than the spool wants
		t.Fatal(err)
	}
	leftover := filepath.Join(spool, "upload-4242.spool")
	if err := os.WriteFile(leftover, []byte("ciphertext of a call that died with its process"), 0o600); err != nil {
		t.Fatal(err)
	}
	startReady(t, remoteConfig(t, up, dataDir), log, Options{})
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("the leftover spool file survived the start (%v)", err)
	}
	info, err := os.Stat(spool)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o700 {
		t.Errorf("spool directory mode %v, want 0700", mode)
	}
}
