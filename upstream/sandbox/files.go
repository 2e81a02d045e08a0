package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File modes of everything the emulator writes: its state includes private
// keys, so only the owner may read it.
const (
	dirMode  os.FileMode = 0o700
	fileMode os.FileMode = 0o600
)

// Layout of Config.DataDir.
const (
	stateFileName   = "state.json"
	signingFileName = "signing-keys.json"
	journalFileName = "journal.jsonl"
	poolDirName     = "pool"
	backupsDirName  = "backups"
	uploadsDirName  = "uploads"
)

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content, never a torn file: temp file in the same
// directory, fsync, rename, fsync the directory.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(fileMode); err != nil {
		_ = f.Close()
		return err
	}
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir) //nolint:gosec // G304: dir holds a file this package just wrote under the configured DataDir
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// ensureDir creates dir (and parents) owner-only, and tightens an existing
// one that is more open.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("sandbox: creating %s: %w", dir, err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("sandbox: %s is not a directory", dir)
	}
	if info.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, dirMode); err != nil {
			return fmt.Errorf("sandbox: restricting %s to its owner: %w", dir, err)
		}
	}
	return nil
}
