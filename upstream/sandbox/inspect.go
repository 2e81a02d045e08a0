package sandbox

import (
	"net/http"
	"strconv"

	"github.com/walletprovider/recoveryservice/keycrypto"
)

// The inspection endpoints exist only in the emulator: operators and tests
// use them to see what the "enclave" holds and to run a recovery. They need
// no token (the emulator is a development tool bound to loopback).

// InspectedKey is one entry of GET /sandbox/v1/keys. It is exported so the
// handler and the clients that read the endpoint (sandboxtest) share one
// definition of the wire format.
type InspectedKey struct {
	KeyID          string `json:"key_id"`
	UserIdentifier string `json:"user_identifier"`
	// UserID is the emulator's internal user uuid (what sign_with's
	// user_id binds), listed so tests can check the binding.
	UserID         string `json:"user_id"`
	CustomerID     string `json:"customer_id"`
	PackageID      string `json:"package_id"`
	KeyEnvironment string `json:"key_environment"`
	PublicKey      string `json:"public_key"`
	CreatedAt      string `json:"created_at"`
}

// InspectedKeys is the body of GET /sandbox/v1/keys.
type InspectedKeys struct {
	Keys []InspectedKey `json:"keys"`
}

// InspectedBackup is one entry of GET /sandbox/v1/backups: where a backup
// is filed and what was stored.
type InspectedBackup struct {
	BackupID   string `json:"backup_id"`
	BackupType string `json:"backup_type"`
	KeyID      string `json:"key_id"`
	CustomerID string `json:"customer_id"`
	PackageID  string `json:"package_id"`
	SizeBytes  int64  `json:"size_bytes"`
	// SHA256 is the hex SHA-256 of the stored bytes (the ciphertext or
	// the file), so a test can check what arrived without fetching it.
	SHA256 string `json:"sha256"`
	// Checksum is the plaintext checksum secure/data verified ("" for a
	// file).
	Checksum string         `json:"checksum"`
	Metadata BackupMetadata `json:"metadata"`
	StoredAt string         `json:"stored_at"`
}

// InspectedBackups is the body of GET /sandbox/v1/backups.
type InspectedBackups struct {
	Backups []InspectedBackup `json:"backups"`
}

// Recovered is the body of POST /sandbox/v1/backups/{id}/recover. The
// plaintext travels as standard base64, as a []byte does in JSON.
type Recovered struct {
	Plaintext []byte `json:"plaintext"`
}

func (s *Server) handleListKeys(w http.ResponseWriter, _ *http.Request) {
	keys := []InspectedKey{}
	for _, k := range s.store.listKeys() {
		keys = append(keys, InspectedKey{
			KeyID:          k.KeyID,
			UserIdentifier: k.UserIdentifier,
			UserID:         k.UserID,
			CustomerID:     k.CustomerID,
			PackageID:      k.PackageID,
			KeyEnvironment: k.KeyEnvironment,
			PublicKey:      k.PublicKey,
			CreatedAt:      k.CreatedAt.UTC().Format(storedAtLayout),
		})
	}
	writeJSON(w, http.StatusOK, InspectedKeys{Keys: keys})
}

func (s *Server) handleListBackups(w http.ResponseWriter, _ *http.Request) {
	backups := []InspectedBackup{}
	for _, b := range s.store.listBackups() {
		backups = append(backups, InspectedBackup{
			BackupID:   b.BackupID,
			BackupType: b.BackupType,
			KeyID:      b.KeyID,
			CustomerID: b.CustomerID,
			PackageID:  b.PackageID,
			SizeBytes:  b.SizeBytes,
			SHA256:     b.SHA256,
			Checksum:   b.Checksum,
			Metadata:   b.Metadata,
			StoredAt:   b.StoredAt.UTC().Format(storedAtLayout),
		})
	}
	writeJSON(w, http.StatusOK, InspectedBackups{Backups: backups})
}

// backupFromPath resolves the {backup_id} path parameter.
func (s *Server) backupFromPath(r *http.Request) (backupRecord, *apiError) {
	id := r.PathValue("backup_id")
	if !isUUID(id) {
		return backupRecord{}, errInvalidField("backup_id", "must be a uuid")
	}
	b, ok := s.store.backupByID(id)
	if !ok {
		return backupRecord{}, errNotFound("Backup not found")
	}
	return b, nil
}

func (s *Server) handleBackupContent(w http.ResponseWriter, r *http.Request) {
	b, apiErr := s.backupFromPath(r)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	content, err := s.store.content(b.BackupID)
	if err != nil {
		s.log.Error("sandbox: reading backup content failed", "backup_id", b.BackupID, "error", err)
		writeError(w, errInternal())
		return
	}
	w.Header().Set("Content-Type", contentTypeOctetStream)
	w.Header().Set("Content-Length", strconv.Itoa(len(content)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(content)
}

// handleRecover decrypts a data backup with its key's private half: the
// emulator's stand-in for a recovery through CoinCover Control. The
// plaintext goes to the caller only, never to the log.
func (s *Server) handleRecover(w http.ResponseWriter, r *http.Request) {
	b, apiErr := s.backupFromPath(r)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	if b.BackupType != BackupTypeData {
		writeError(w, errInvalid("Only data backups are recovered here; a file backup is returned as stored by GET "+
			PathInspectBackups+"/"+b.BackupID+"/content"))
		return
	}
	key := s.store.keyByID(b.KeyID)
	content, err := s.store.content(b.BackupID)
	if key == nil || err != nil {
		s.log.Error("sandbox: a data backup lost its key or content", "backup_id", b.BackupID, "error", err)
		writeError(w, errInternal())
		return
	}
	plaintext, err := keycrypto.Decrypt(key.private, content)
	if err != nil {
		s.log.Error("sandbox: a stored data backup no longer decrypts", "backup_id", b.BackupID, "error", err)
		writeError(w, errInternal())
		return
	}
	logAttrs(r, "backup_id", b.BackupID, "key_id", b.KeyID)
	writeJSON(w, http.StatusOK, Recovered{Plaintext: plaintext})
	keycrypto.Zero(plaintext)
}

// handlePrivateKey returns an assigned key's private half as PKCS#8 PEM, so
// interop tests can decrypt with other crypto implementations (openssl).
func (s *Server) handlePrivateKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("key_id")
	if !isUUID(id) {
		writeError(w, errInvalidField("key_id", "must be a uuid"))
		return
	}
	key := s.store.keyByID(id)
	if key == nil {
		writeError(w, errNotFound("Key not found"))
		return
	}
	logAttrs(r, "key_id", key.KeyID)
	w.Header().Set("Content-Type", contentTypePEM)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(key.PrivateKeyPEM))
}
