package sandbox

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// stateVersion is bumped when persistedState changes incompatibly.
const stateVersion = 1

// assignment is the pair the contract allows one key for.
type assignment struct {
	CustomerID     string
	UserIdentifier string
}

// keyRecord is an assigned key, private half included (the emulator is the
// enclave).
type keyRecord struct {
	KeyID          string    `json:"key_id"`
	UserIdentifier string    `json:"user_identifier"`
	UserID         string    `json:"user_id"`
	CustomerID     string    `json:"customer_id"`
	CustomerName   string    `json:"customer_name"`
	PackageID      string    `json:"package_id"`
	PackageName    string    `json:"package_name"`
	KeyEnvironment string    `json:"key_environment"`
	PublicKey      string    `json:"public_key"` // lowercase hex SPKI DER
	PrivateKeyPEM  string    `json:"private_key_pem"`
	CreatedAt      time.Time `json:"created_at"`

	private *rsa.PrivateKey
}

// BackupMetadata is the optional metadata of a stored backup, as secure/data
// and secure/file take it and the inspection endpoints list it.
type BackupMetadata struct {
	Description      string `json:"description,omitempty"`
	ContentType      string `json:"content_type,omitempty"`
	OriginalFilename string `json:"original_filename,omitempty"`
}

// backupRecord describes a stored backup; its bytes live in the content
// store (a file under DataDir/backups, or memory).
type backupRecord struct {
	BackupID   string         `json:"backup_id"`
	BackupType string         `json:"backup_type"`
	KeyID      string         `json:"key_id"`
	CustomerID string         `json:"customer_id"`
	PackageID  string         `json:"package_id"`
	SizeBytes  int64          `json:"size_bytes"`
	SHA256     string         `json:"sha256"`             // of the stored bytes
	Checksum   string         `json:"checksum,omitempty"` // of the plaintext (data backups)
	Metadata   BackupMetadata `json:"metadata"`
	StoredAt   time.Time      `json:"stored_at"`
}

// userIDRecord persists the user uuid allocated per (customer, user_identifier).
type userIDRecord struct {
	CustomerID     string `json:"customer_id"`
	UserIdentifier string `json:"user_identifier"`
	UserID         string `json:"user_id"`
}

// persistedState is DataDir/state.json.
type persistedState struct {
	Version int            `json:"version"`
	Keys    []keyRecord    `json:"keys"`
	UserIDs []userIDRecord `json:"user_ids"`
	Backups []backupRecord `json:"backups"`
}

// journalEntry is one line of DataDir/journal.jsonl: a commit appended
// since the last snapshot. Appending one line (and an fsync) keeps a
// store's cost the same however full the emulator is; the journal is folded
// into state.json when the store next opens.
type journalEntry struct {
	Key     *keyRecord     `json:"key,omitempty"`
	Backup  *backupRecord  `json:"backup,omitempty"`
	UserIDs []userIDRecord `json:"user_ids,omitempty"`
}

// errAlreadyAssigned is returned by reserve for a pair that has (or is
// getting) a key.
var errAlreadyAssigned = errors.New("already assigned")

// store is the emulator's state: every read and write goes through its
// mutex, and every write is persisted before it becomes visible.
type store struct {
	dir string // "" = memory only

	mu           sync.Mutex
	keys         []*keyRecord // assignment order
	keysByID     map[string]*keyRecord
	keysByPublic map[string]*keyRecord // lowercase hex
	assigned     map[assignment]*keyRecord
	pending      map[assignment]bool
	userIDs      map[assignment]string
	// journaledUsers are the userIDs already persisted (snapshot or
	// journal); the others go with the next commit.
	journaledUsers map[assignment]bool
	backups        []*backupRecord // storage order
	backupsByID    map[string]*backupRecord
	contents       map[string][]byte // memory mode only
}

// openStore loads the state under dir ("" = a fresh in-memory store) and
// removes what an interrupted run left half-done: upload temp files and
// backup contents no record points to.
func openStore(dir string) (*store, error) {
	s := &store{
		dir:          dir,
		keysByID:     map[string]*keyRecord{},
		keysByPublic: map[string]*keyRecord{},
		assigned:     map[assignment]*keyRecord{},
		pending:      map[assignment]bool{},
		userIDs:      map[assignment]string{},
		backupsByID:  map[string]*backupRecord{},

		journaledUsers: map[assignment]bool{},
		contents:       map[string][]byte{},
	}
	if dir == "" {
		return s, nil
	}
	for _, d := range []string{dir, filepath.Join(dir, backupsDirName), filepath.Join(dir, uploadsDirName)} {
		if err := ensureDir(d); err != nil {
			return nil, err
		}
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	if err := s.replayJournal(); err != nil {
		return nil, err
	}
	if err := s.removeLeftovers(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *store) load() error {
	path := filepath.Join(s.dir, stateFileName)
	data, err := os.ReadFile(path) //nolint:gosec // G304: a fixed file name under the configured DataDir
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox: reading state: %w", err)
	}
	var st persistedState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("sandbox: %s is corrupt: %w", path, err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("sandbox: %s has version %d, this build reads version %d", path, st.Version, stateVersion)
	}
	for i := range st.Keys {
		k := st.Keys[i]
		priv, err := parseRSAPrivatePEM([]byte(k.PrivateKeyPEM))
		if err != nil {
			return fmt.Errorf("sandbox: %s: key %s: %w", path, k.KeyID, err)
		}
		k.private = priv
		s.indexKey(&k)
	}
	s.addUserIDs(st.UserIDs)
	for i := range st.Backups {
		b := st.Backups[i]
		if err := s.addBackup(&b); err != nil {
			return fmt.Errorf("sandbox: %s: %w", path, err)
		}
	}
	return nil
}

func (s *store) addUserIDs(ids []userIDRecord) {
	for _, u := range ids {
		a := assignment{u.CustomerID, u.UserIdentifier}
		s.userIDs[a] = u.UserID
		s.journaledUsers[a] = true
	}
}

// addBackup indexes a loaded backup record.
func (s *store) addBackup(b *backupRecord) error {
	if !isUUID(b.BackupID) {
		return fmt.Errorf("backup id %q is not a uuid", b.BackupID)
	}
	s.backups = append(s.backups, b)
	s.backupsByID[b.BackupID] = b
	return nil
}

// replayJournal applies the journal's commits to what state.json held,
// then folds them into a new state.json and empties the journal. A last
// line without its newline is a commit a crash interrupted before it was
// acknowledged: it is dropped. Replaying is idempotent (a crash between
// the new snapshot and emptying the journal replays records already in
// it), so a record already loaded is skipped.
func (s *store) replayJournal() error {
	path := filepath.Join(s.dir, journalFileName)
	data, err := os.ReadFile(path) //nolint:gosec // G304: a fixed file name under the configured DataDir
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox: reading journal: %w", err)
	}
	if len(data) == 0 {
		return nil
	}
	complete := data[:bytes.LastIndexByte(data, '\n')+1]
	for line := range bytes.Lines(complete) {
		var e journalEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("sandbox: %s is corrupt: %w", path, err)
		}
		s.addUserIDs(e.UserIDs)
		if k := e.Key; k != nil && s.keysByID[k.KeyID] == nil {
			priv, err := parseRSAPrivatePEM([]byte(k.PrivateKeyPEM))
			if err != nil {
				return fmt.Errorf("sandbox: %s: key %s: %w", path, k.KeyID, err)
			}
			k.private = priv
			s.indexKey(k)
		}
		if b := e.Backup; b != nil && s.backupsByID[b.BackupID] == nil {
			if err := s.addBackup(b); err != nil {
				return fmt.Errorf("sandbox: %s: %w", path, err)
			}
		}
	}
	if err := s.saveLocked(); err != nil {
		return fmt.Errorf("sandbox: folding the journal into the state: %w", err)
	}
	if err := os.Truncate(path, 0); err != nil {
		return fmt.Errorf("sandbox: emptying the journal: %w", err)
	}
	return nil
}

// appendLocked persists one commit by appending it to the journal with an
// fsync; on failure the journal is cut back to where it was, so nothing of
// the commit stays. s.mu must be held.
func (s *store) appendLocked(e journalEntry) (err error) {
	if s.dir == "" {
		return nil
	}
	for a, id := range s.userIDs {
		if !s.journaledUsers[a] {
			e.UserIDs = append(e.UserIDs, userIDRecord{CustomerID: a.CustomerID, UserIdentifier: a.UserIdentifier, UserID: id})
		}
	}
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	path := filepath.Join(s.dir, journalFileName)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode) //nolint:gosec // G304: a fixed file name under the configured DataDir
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		_ = f.Truncate(info.Size())
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Truncate(info.Size())
		return err
	}
	if errors.Is(statErr, os.ErrNotExist) {
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	for _, u := range e.UserIDs {
		s.journaledUsers[assignment{u.CustomerID, u.UserIdentifier}] = true
	}
	return nil
}

// removeLeftovers deletes upload temp files and content files that no
// backup record names (a crash between writing content and recording it).
func (s *store) removeLeftovers() error {
	uploads := filepath.Join(s.dir, uploadsDirName)
	entries, err := os.ReadDir(uploads)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(uploads, e.Name())); err != nil {
			return fmt.Errorf("sandbox: removing interrupted upload: %w", err)
		}
	}
	backups := filepath.Join(s.dir, backupsDirName)
	entries, err = os.ReadDir(backups)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	for _, e := range entries {
		if _, ok := s.backupsByID[e.Name()]; !ok {
			if err := os.Remove(filepath.Join(backups, e.Name())); err != nil {
				return fmt.Errorf("sandbox: removing unrecorded backup content: %w", err)
			}
		}
	}
	return nil
}

func (s *store) indexKey(k *keyRecord) {
	s.keys = append(s.keys, k)
	s.keysByID[k.KeyID] = k
	s.keysByPublic[k.PublicKey] = k
	s.assigned[assignment{k.CustomerID, k.UserIdentifier}] = k
}

// saveLocked persists the whole state atomically (a snapshot: opening
// folds the journal into one); s.mu must be held.
func (s *store) saveLocked() error {
	if s.dir == "" {
		return nil
	}
	st := persistedState{Version: stateVersion, Keys: []keyRecord{}, UserIDs: []userIDRecord{}, Backups: []backupRecord{}}
	for _, k := range s.keys {
		st.Keys = append(st.Keys, *k)
	}
	for a, id := range s.userIDs {
		st.UserIDs = append(st.UserIDs, userIDRecord{CustomerID: a.CustomerID, UserIdentifier: a.UserIdentifier, UserID: id})
	}
	slices.SortFunc(st.UserIDs, func(a, b userIDRecord) int {
		return strings.Compare(a.CustomerID+"\x00"+a.UserIdentifier, b.CustomerID+"\x00"+b.UserIdentifier)
	})
	for _, b := range s.backups {
		st.Backups = append(st.Backups, *b)
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.dir, stateFileName), data)
}

// reserve claims a for one assignment in flight; errAlreadyAssigned when it
// has a key or another request holds it. The caller ends the reservation
// with commitKey or release.
func (s *store) reserve(a assignment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.assigned[a] != nil || s.pending[a] {
		return errAlreadyAssigned
	}
	s.pending[a] = true
	return nil
}

// release drops a reservation that did not lead to a key.
func (s *store) release(a assignment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, a)
}

// userID returns the user uuid for a, allocating one (kept in memory until
// the next commit persists it) on first use.
func (s *store) userID(a assignment) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.userIDs[a]
	if !ok {
		id = newUUID()
		s.userIDs[a] = id
	}
	return id
}

// commitKey records a reserved assignment durably; on failure nothing is
// recorded and the reservation is released.
func (s *store) commitKey(k *keyRecord) error {
	a := assignment{k.CustomerID, k.UserIdentifier}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, a)
	if _, dup := s.keysByPublic[k.PublicKey]; dup {
		return fmt.Errorf("sandbox: key source returned a key that is already assigned (%s)", k.PublicKey[len(k.PublicKey)-16:])
	}
	pemBytes, err := marshalRSAPrivatePEM(k.private)
	if err != nil {
		return err
	}
	k.PrivateKeyPEM = string(pemBytes)
	s.indexKey(k)
	if err := s.appendLocked(journalEntry{Key: k}); err != nil {
		s.keys = s.keys[:len(s.keys)-1]
		delete(s.keysByID, k.KeyID)
		delete(s.keysByPublic, k.PublicKey)
		delete(s.assigned, a)
		return fmt.Errorf("sandbox: persisting key: %w", err)
	}
	return nil
}

// keyByPublicHex finds an assigned key by its hex (any case).
func (s *store) keyByPublicHex(h string) *keyRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keysByPublic[strings.ToLower(h)]
}

// keyByID finds an assigned key by key_id.
func (s *store) keyByID(id string) *keyRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keysByID[strings.ToLower(id)]
}

// isAssignedPublic reports whether the hex key is already assigned (the
// pool uses it to drop keys a crash left behind after assignment).
func (s *store) isAssignedPublic(h string) bool {
	return s.keyByPublicHex(h) != nil
}

// listKeys returns copies of all keys in assignment order.
func (s *store) listKeys() []keyRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]keyRecord, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, *k)
	}
	return out
}

// listBackups returns copies of all backup records in storage order.
func (s *store) listBackups() []backupRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]backupRecord, 0, len(s.backups))
	for _, b := range s.backups {
		out = append(out, *b)
	}
	return out
}

// backupByID returns a copy of one backup record.
func (s *store) backupByID(id string) (backupRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.backupsByID[strings.ToLower(id)]
	if !ok {
		return backupRecord{}, false
	}
	return *b, true
}

// content returns the stored bytes of a backup. An id that is not a UUID
// is not found: it never becomes part of a file name.
func (s *store) content(id string) ([]byte, error) {
	if !isUUID(id) {
		return nil, os.ErrNotExist
	}
	id = strings.ToLower(id)
	if s.dir == "" {
		s.mu.Lock()
		defer s.mu.Unlock()
		c, ok := s.contents[id]
		if !ok {
			return nil, os.ErrNotExist
		}
		return slices.Clone(c), nil
	}
	return os.ReadFile(filepath.Join(s.dir, backupsDirName, id)) //nolint:gosec // G304: id is a UUID (checked above) under the configured DataDir
}

// commitBackup stores content under b.BackupID and records b; either both
// happen or neither (content is removed when the record cannot be saved).
func (s *store) commitBackup(b *backupRecord, content *upload) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		s.contents[b.BackupID] = content.takeBytes()
	} else if err := content.moveTo(filepath.Join(s.dir, backupsDirName, b.BackupID)); err != nil {
		return fmt.Errorf("sandbox: storing backup content: %w", err)
	}
	s.backups = append(s.backups, b)
	s.backupsByID[b.BackupID] = b
	if err := s.appendLocked(journalEntry{Backup: b}); err != nil {
		s.backups = s.backups[:len(s.backups)-1]
		delete(s.backupsByID, b.BackupID)
		if s.dir == "" {
			delete(s.contents, b.BackupID)
		} else {
			_ = os.Remove(filepath.Join(s.dir, backupsDirName, b.BackupID))
		}
		return fmt.Errorf("sandbox: persisting backup record: %w", err)
	}
	return nil
}

// sha256Hex is the lowercase hex SHA-256 of b (the inspection digest of
// stored bytes; the plaintext checksum comes from keycrypto.Checksum).
func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// marshalRSAPrivatePEM encodes priv as a PKCS#8 "PRIVATE KEY" block.
func marshalRSAPrivatePEM(priv *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sandbox: encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseRSAPrivatePEM decodes one PKCS#8 "PRIVATE KEY" block holding an RSA key.
func parseRSAPrivatePEM(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("private key is not a PKCS#8 PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, not RSA", key)
	}
	return rsaKey, nil
}
