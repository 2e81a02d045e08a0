package app

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/walletprovider/recoveryservice/service/auth"
)

// Of the registry HMAC key (--registry-hmac-key-file): it keys the hashes
// that identify a backup request's content in the registry (the idempotency
// request hash), so that nothing derived from a plaintext is kept in a form
// anyone who reads the registry could brute-force.
const (
	// registryHMACKeyFileName is the development key under --data-dir,
	// made on first start when no --registry-hmac-key-file is set.
	registryHMACKeyFileName = "registry-hmac.key"
	// minRegistryHMACKeyBytes is the shortest key accepted: 256 bits, the
	// size of HMAC-SHA256's output.
	minRegistryHMACKeyBytes = 32
	// maxRegistryHMACKeyBytes bounds what is read from the file.
	maxRegistryHMACKeyBytes = 4096
)

// registryHMACKeyProblems checks --registry-hmac-key-file, when set: a
// secret file (auth.CheckSecretFile's rule) holding a key long enough.
func (c Config) registryHMACKeyProblems() []error {
	if c.RegistryHMACKeyFile == "" {
		return nil
	}
	if _, err := loadRegistryHMACKey("--registry-hmac-key-file", c.RegistryHMACKeyFile); err != nil {
		return []error{err}
	}
	return nil
}

// registryHMACKey returns the key of --registry-hmac-key-file or, without
// it (development only: the production guard requires the flag), the key
// under --data-dir, made (0600) on the first start.
//
// NOTE: replicas sharing a registry need the same key, and a key that
// changes makes every earlier idempotency key look reused: production reads
// it from a file every replica mounts.
func (c Config) registryHMACKey() ([]byte, error) {
	if c.RegistryHMACKeyFile != "" {
		return loadRegistryHMACKey("--registry-hmac-key-file", c.RegistryHMACKeyFile)
	}
	path := filepath.Join(c.DataDir, registryHMACKeyFileName)
	if err := os.MkdirAll(c.DataDir, dataDirMode); err != nil {
		return nil, fmt.Errorf("creating --data-dir: %w", err)
	}
	key := make([]byte, minRegistryHMACKeyBytes)
	_, _ = rand.Read(key) // never fails (it panics instead)
	encoded := []byte(hex.EncodeToString(key) + "\n")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // G304: under the operator's --data-dir
	switch {
	case err == nil:
		_, werr := f.Write(encoded)
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			_ = os.Remove(path)
			return nil, fmt.Errorf("writing the development registry HMAC key %s: %w", path, err)
		}
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("creating the development registry HMAC key %s: %w", path, err)
	}
	return loadRegistryHMACKey("the development registry HMAC key", path)
}

// loadRegistryHMACKey reads a key file: its content, surrounding white
// space trimmed, is the key (e.g. `openssl rand -hex 32`). It is refused
// when others may read it, as every secret file is.
func loadRegistryHMACKey(what, path string) ([]byte, error) {
	if err := auth.CheckSecretFile(path); err != nil {
		return nil, fmt.Errorf("%s %w", what, err)
	}
	data, err := os.ReadFile(path) //nolint:gosec // G304: the path is operator configuration
	if err != nil {
		return nil, fmt.Errorf("%s %s cannot be read: %w", what, path, errors.Unwrap(err))
	}
	if len(data) > maxRegistryHMACKeyBytes {
		return nil, fmt.Errorf("%s %s holds %d bytes, more than a key (at most %d)", what, path, len(data), maxRegistryHMACKeyBytes)
	}
	key := bytes.TrimSpace(data)
	if len(key) < minRegistryHMACKeyBytes {
		return nil, fmt.Errorf("%s %s holds a key of %d bytes: use at least %d (e.g. openssl rand -hex 32 > %s)", what, path, len(key), minRegistryHMACKeyBytes, path)
	}
	return key, nil
}
