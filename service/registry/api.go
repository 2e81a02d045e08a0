package registry

// NOTE: this file fixes the registry's exported API so that service/ can be
// written against it in parallel with the registry itself. The registry work
// fills the bodies in (and may split this file by concept).

import (
	"context"
	"errors"
	"time"
)

// Errors for errors.Is.
var (
	// ErrNotFound: no such key or backup.
	ErrNotFound = errors.New("registry: not found")
	// ErrReservationLost: the reservation token no longer owns a pending row
	// (its lease expired and another request marked it unknown, or it was
	// completed/released already).
	ErrReservationLost = errors.New("registry: reservation no longer held")
	// ErrInvalidPageToken: a page token this registry did not issue.
	ErrInvalidPageToken = errors.New("registry: invalid page token")
)

// KeyTerms are what an assignment is for. (UserIdentifier, CustomerID) is
// the unique pair; the rest are the terms a repeat must match.
type KeyTerms struct {
	UserIdentifier string
	CustomerID     string
	CustomerName   string
	PackageID      string
	PackageName    string
	KeyEnvironment string // "HOT" | "COLD"
	Caller         string // authenticated caller name, "" when auth is off
}

// Key is a recorded, verified key assignment.
type Key struct {
	KeyTerms
	KeyID        string
	PublicKeyHex string // lowercase
	Fingerprint  string // lowercase hex SHA-256 of the DER
	AssignedAt   time.Time
}

// AssignmentState is the state of the (user, customer) row found or made
// by ReserveAssignment.
type AssignmentState int

// Assignment states.
const (
	// AssignmentReserved: this call inserted a pending row and owns it
	// (Reservation.Token); call upstream, then Complete, Release or Fail.
	AssignmentReserved AssignmentState = iota + 1
	// AssignmentRecorded: a verified key is recorded (Reservation.Key).
	AssignmentRecorded
	// AssignmentInProgress: another request holds a live reservation.
	AssignmentInProgress
	// AssignmentUnknown: an earlier reservation's outcome is unknown (its
	// lease expired, or its upstream call's response was lost); upstream may
	// hold a key we never saw. Needs an operator.
	AssignmentUnknown
	// AssignmentUntrusted: upstream assigned a key whose enclave signature
	// or binding failed verification; nothing usable is recorded. Needs an
	// operator.
	AssignmentUntrusted
	// AssignmentElsewhere: upstream answered 409 with no local record: the
	// key was assigned outside this registry. Needs an operator.
	AssignmentElsewhere
)

// AssignmentReservation is the result of ReserveAssignment.
type AssignmentReservation struct {
	State AssignmentState
	// Token identifies the reservation (AssignmentReserved only).
	Token string
	// Terms are the terms recorded for the pair (every state but Reserved).
	Terms KeyTerms
	// Key is the recorded key (AssignmentRecorded only).
	Key *Key
	// Reason is the recorded failure reason (Unknown, Untrusted, Elsewhere).
	Reason string
}

// BackupMetadata is stored with a backup.
type BackupMetadata struct {
	Description      string
	ContentType      string
	OriginalFilename string
}

// Backup is a recorded, upstream-confirmed backup. Never plaintext or
// ciphertext.
type Backup struct {
	BackupID       string
	BackupType     string // "data" | "file"
	KeyID          string
	CustomerID     string
	PackageID      string
	Checksum       string // lowercase hex SHA-256
	SizeBytes      int64
	Metadata       BackupMetadata
	StoredAt       time.Time
	Caller         string
	IdempotencyKey string // "" when none
}

// BackupState is the state found or made by ReserveBackup.
type BackupState int

// Backup reservation states.
const (
	// BackupReserved: this call owns (scope, idempotency key); store
	// upstream, then CompleteBackup or ReleaseBackup.
	BackupReserved BackupState = iota + 1
	// BackupRecorded: a backup is recorded for the key (Reservation.Backup).
	BackupRecorded
	// BackupInProgress: another request holds a live reservation.
	BackupInProgress
	// BackupConflict: the key was used for a request with a different
	// request hash.
	BackupConflict
	// BackupUnknown: an earlier reservation's outcome is unknown.
	BackupUnknown
)

// BackupReservation is the result of ReserveBackup.
type BackupReservation struct {
	State  BackupState
	Token  string
	Backup *Backup
}

// Page asks for one page of a listing, newest first.
type Page struct {
	Size  int    // 1..500
	Token string // "" for the first page
}

// KeyFilter narrows ListKeys. Empty fields match everything;
// Organisations, when non-nil, limits to those customer ids (authorization).
type KeyFilter struct {
	CustomerID     string
	UserIdentifier string
	Organisations  []string
}

// BackupFilter narrows ListBackups, as KeyFilter.
type BackupFilter struct {
	KeyID         string
	CustomerID    string
	Organisations []string
}

// Store is the registry on SQLite or PostgreSQL. Safe for concurrent use,
// including by several processes sharing one PostgreSQL database.
type Store struct{}

// OpenSQLite opens (creating and migrating) a SQLite registry at path, WAL mode.
func OpenSQLite(ctx context.Context, path string) (*Store, error) { panic("unimplemented") }

// OpenPostgres opens (migrating) a PostgreSQL registry.
func OpenPostgres(ctx context.Context, url string) (*Store, error) { panic("unimplemented") }

// Close releases the database.
func (s *Store) Close() error { panic("unimplemented") }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { panic("unimplemented") }

// ReserveAssignment finds or creates the row for (terms.UserIdentifier,
// terms.CustomerID) in one transaction. A pending row older than lease
// becomes AssignmentUnknown.
func (s *Store) ReserveAssignment(ctx context.Context, terms KeyTerms, lease time.Duration) (AssignmentReservation, error) {
	panic("unimplemented")
}

// CompleteAssignment records the verified key on the reservation.
func (s *Store) CompleteAssignment(ctx context.Context, token string, key Key) error {
	panic("unimplemented")
}

// ReleaseAssignment deletes the reservation: upstream certainly assigned
// nothing, so a later request may try again.
func (s *Store) ReleaseAssignment(ctx context.Context, token string) error {
	panic("unimplemented")
}

// FailAssignment parks the reservation in state (Unknown, Untrusted or
// Elsewhere) with a reason for operators; nothing usable is recorded.
func (s *Store) FailAssignment(ctx context.Context, token string, state AssignmentState, reason string) error {
	panic("unimplemented")
}

// GetKey returns a recorded key by id (ErrNotFound).
func (s *Store) GetKey(ctx context.Context, keyID string) (*Key, error) { panic("unimplemented") }

// GetKeyByPublicKey returns a recorded key by hex public key, any case (ErrNotFound).
func (s *Store) GetKeyByPublicKey(ctx context.Context, publicKeyHex string) (*Key, error) {
	panic("unimplemented")
}

// ListKeys pages recorded keys, newest first; next is "" on the last page.
func (s *Store) ListKeys(ctx context.Context, f KeyFilter, p Page) (keys []Key, next string, err error) {
	panic("unimplemented")
}

// ReserveBackup finds or creates the idempotency row for (scope, key).
// requestHash identifies the request's content; a repeat with another hash
// is BackupConflict. A pending row older than lease becomes BackupUnknown.
func (s *Store) ReserveBackup(ctx context.Context, scope, idempotencyKey, requestHash string, lease time.Duration) (BackupReservation, error) {
	panic("unimplemented")
}

// CompleteBackup records the backup on the reservation.
func (s *Store) CompleteBackup(ctx context.Context, token string, b Backup) error {
	panic("unimplemented")
}

// ReleaseBackup deletes the reservation: upstream certainly stored nothing.
func (s *Store) ReleaseBackup(ctx context.Context, token string) error { panic("unimplemented") }

// RecordBackup records a backup made without an idempotency key.
func (s *Store) RecordBackup(ctx context.Context, b Backup) error { panic("unimplemented") }

// ListBackups pages recorded backups, newest first.
func (s *Store) ListBackups(ctx context.Context, f BackupFilter, p Page) (backups []Backup, next string, err error) {
	panic("unimplemented")
}
