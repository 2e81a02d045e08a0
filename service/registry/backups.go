package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// BackupMetadata is stored with a backup.
type BackupMetadata struct {
	Description      string
	ContentType      string
	OriginalFilename string
}

// Backup is a recorded, upstream-confirmed backup. Never plaintext or
// ciphertext.
type Backup struct {
	BackupID   string
	BackupType string // "data" | "file"
	KeyID      string
	CustomerID string
	PackageID  string
	// Checksum is the lowercase hex SHA-256 of a file backup's bytes as
	// sent upstream; "" for a data backup, whose only checksum is its
	// plaintext's and is never kept (it would let a low-entropy secret be
	// brute-forced by whoever reads the registry).
	Checksum       string
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
	// BackupUnknown: an earlier reservation's outcome is unknown and
	// cannot be taken over (its request hash was erased by migration 0005,
	// so this request cannot be shown to be the same one).
	BackupUnknown
)

// String names the state for logs and spans.
func (s BackupState) String() string {
	switch s {
	case BackupReserved:
		return "reserved"
	case BackupRecorded:
		return "recorded"
	case BackupInProgress:
		return "in_progress"
	case BackupConflict:
		return "conflict"
	case BackupUnknown:
		return "unknown"
	default:
		return fmt.Sprintf("BackupState(%d)", int(s))
	}
}

// BackupReservation is the result of ReserveBackup.
type BackupReservation struct {
	State  BackupState
	Token  string
	Backup *Backup
	// AfterUnknown is set with BackupReserved when the reservation took
	// over a row whose earlier request had an unknown outcome: the upstream
	// may hold a copy already, and storing again may leave an extra one.
	AfterUnknown bool
}

// erasedRequestHash is the request_hash migration 0005 left in place of
// every hash recorded before it.
const erasedRequestHash = "erased"

// Values of backups.state.
const (
	backupPending = "pending"
	backupStored  = "stored"
	backupUnknown = "unknown"
)

const backupColumns = `backup_id, backup_type, key_id, customer_id, package_id, checksum_sha256,
	size_bytes, description, content_type, original_filename, stored_at, caller, idempotency_key`

// The SQL of ReserveBackup, CompleteBackup and RecordBackup, prepared once
// per Store (statements.go).
const (
	// reserveBackupSQL inserts a pending idempotency row unless (scope, key)
	// has one; the UNIQUE constraint decides who reserves.
	reserveBackupSQL = `
		INSERT INTO backups (state, idempotency_scope, idempotency_key, request_hash, reservation_token, reserved_at)
		VALUES ('pending', $1, $2, $3, $4, $5)
		ON CONFLICT (idempotency_scope, idempotency_key) DO NOTHING
		RETURNING id`
	findBackupSQL = `
		SELECT id, state, request_hash, reservation_token, reserved_at FROM backups
		WHERE idempotency_scope = $1 AND idempotency_key = $2`
	backupByRowIDSQL = `SELECT ` + backupColumns + ` FROM backups WHERE id = $1`
	// backupKeySQL finds the recorded key a backup names (resolveBackupKey).
	backupKeySQL      = `SELECT customer_id, package_id FROM keys WHERE key_id = $1 AND state = 'assigned'`
	completeBackupSQL = `
		UPDATE backups SET state = 'stored', reservation_token = NULL, reason = '',
			backup_id = $1, backup_type = $2, key_id = $3, customer_id = $4, package_id = $5,
			checksum_sha256 = $6, size_bytes = $7, description = $8, content_type = $9,
			original_filename = $10, caller = $11, stored_at = $12
		WHERE reservation_token = $13 AND state = 'pending'`
	recordBackupSQL = `
		INSERT INTO backups (state, backup_id, backup_type, key_id, customer_id, package_id,
			checksum_sha256, size_bytes, description, content_type, original_filename, caller, stored_at)
		VALUES ('stored', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`
)

func scanBackup(sc interface{ Scan(...any) error }) (Backup, error) {
	var (
		b        Backup
		storedAt dbTime
		idem     sql.NullString
		checksum sql.NullString
	)
	err := sc.Scan(&b.BackupID, &b.BackupType, &b.KeyID, &b.CustomerID, &b.PackageID, &checksum,
		&b.SizeBytes, &b.Metadata.Description, &b.Metadata.ContentType, &b.Metadata.OriginalFilename,
		&storedAt, &b.Caller, &idem)
	b.StoredAt, b.IdempotencyKey, b.Checksum = storedAt.Time, idem.String, checksum.String
	return b, err
}

// ReserveBackup finds or creates the idempotency row for (scope, key).
// requestHash identifies the request's content; a repeat with another hash
// is BackupConflict. A repeat of the same request (same hash) after an
// unknown outcome, or after the pending row's lease ran out, takes the row
// over: it is pending under a new token (BackupReserved with AfterUnknown),
// so the request is stored again and recorded once; one conditional UPDATE
// decides which of concurrent repeats takes it, the others find it pending
// (BackupInProgress). Only a row whose hash migration 0005 erased cannot be
// taken over: it stays BackupUnknown (a pending one once its lease ran out).
//
// scope is the authenticated caller ("" when auth is off), so two callers'
// keys never collide.
func (s *Store) ReserveBackup(ctx context.Context, scope, idempotencyKey, requestHash string, lease time.Duration) (res BackupReservation, err error) {
	ctx, end := s.tel.start(ctx, "ReserveBackup")
	defer func() { end(err, res.State.String()) }()

	if err := checkText("idempotency scope", scope, false); err != nil {
		return BackupReservation{}, err
	}
	if err := checkText("idempotency_key", idempotencyKey, true); err != nil {
		return BackupReservation{}, err
	}
	if err := checkText("request hash", requestHash, true); err != nil {
		return BackupReservation{}, err
	}
	if lease <= 0 {
		return BackupReservation{}, fmt.Errorf("%w: lease must be positive", ErrInvalidArgument)
	}
	for range maxReserveAttempts {
		var done bool
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			var err error
			res, done, err = s.reserveBackup(ctx, tx, scope, idempotencyKey, requestHash, lease)
			return err
		})
		if err != nil {
			return BackupReservation{}, err
		}
		if done {
			return res, nil
		}
	}
	return BackupReservation{}, fmt.Errorf("registry: reserve backup: the row changed under %d attempts", maxReserveAttempts)
}

func (s *Store) reserveBackup(ctx context.Context, tx *sql.Tx, scope, idempotencyKey, requestHash string, lease time.Duration) (res BackupReservation, done bool, err error) {
	now := s.now()
	token := newToken()
	var id int64
	err = s.stmts.reserveBackup.queryRowTx(ctx, tx,
		scope, idempotencyKey, requestHash, token, s.dialect.timeArg(now),
	).Scan(&id)
	switch {
	case err == nil:
		return BackupReservation{State: BackupReserved, Token: token}, true, nil
	case !errors.Is(err, sql.ErrNoRows):
		return res, false, fmt.Errorf("registry: reserve backup: %w", err)
	}

	var (
		state, hash string
		rowToken    sql.NullString
		reservedAt  dbTime
	)
	// NOTE: a separate statement, so that on PostgreSQL (READ COMMITTED) it
	// sees the row whose commit the INSERT waited for.
	err = s.stmts.findBackup.queryRowTx(ctx, tx,
		scope, idempotencyKey).Scan(&id, &state, &hash, &rowToken, &reservedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return res, false, nil // released since the INSERT: try again
	}
	if err != nil {
		return res, false, fmt.Errorf("registry: reserve backup: %w", err)
	}

	switch {
	// NOTE: a hash erased by migration 0005 (it was a bare SHA-256 over the
	// plaintext's checksum) can no longer be compared: the idempotency key
	// alone, within its caller's scope, identifies the request.
	case hash != requestHash && hash != erasedRequestHash:
		return BackupReservation{State: BackupConflict}, true, nil
	case state == backupUnknown && hash == requestHash:
		return s.retakeBackup(ctx, tx, id, token, now)
	case state == backupUnknown:
		return BackupReservation{State: BackupUnknown}, true, nil
	case state == backupStored:
		b, err := scanBackup(s.stmts.backupByRowID.queryRowTx(ctx, tx, id))
		if err != nil {
			return res, false, fmt.Errorf("registry: reserve backup: %w", err)
		}
		return BackupReservation{State: BackupRecorded, Backup: &b}, true, nil
	case state != backupPending:
		return res, false, fmt.Errorf("registry: backup row in unexpected state %q", state)
	case now.Sub(reservedAt.Time) < lease:
		return BackupReservation{State: BackupInProgress}, true, nil
	}

	if hash == requestHash {
		// The same request, its earlier attempt's lease spent: take the
		// row over (the earlier attempt's token stops working).
		r, err := tx.ExecContext(ctx, `
			UPDATE backups SET reservation_token = $1, reserved_at = $2
			WHERE id = $3 AND state = 'pending' AND reservation_token = $4`,
			token, s.dialect.timeArg(now), id, rowToken.String)
		if err != nil {
			return res, false, fmt.Errorf("registry: retake expired backup reservation: %w", err)
		}
		if n, err := r.RowsAffected(); err != nil || n != 1 {
			return res, false, err // completed, released or taken meanwhile: look again
		}
		s.log.WarnContext(ctx, "registry: backup reservation expired; taken over by a repeat of its request, upstream may hold an extra copy",
			"reserved_at", reservedAt.Time, "lease", lease)
		return BackupReservation{State: BackupReserved, Token: token, AfterUnknown: true}, true, nil
	}
	reason := fmt.Sprintf("reservation lease (%s) expired before the upstream outcome was recorded: upstream may hold the backup", lease)
	r, err := tx.ExecContext(ctx, `
		UPDATE backups SET state = 'unknown', reason = $1, reservation_token = NULL
		WHERE id = $2 AND state = 'pending' AND reservation_token = $3`,
		reason, id, rowToken.String)
	if err != nil {
		return res, false, fmt.Errorf("registry: expire backup reservation: %w", err)
	}
	if n, err := r.RowsAffected(); err != nil || n != 1 {
		return res, false, err // completed or released meanwhile: look again
	}
	s.log.WarnContext(ctx, "registry: backup reservation expired; upstream outcome unknown",
		"reserved_at", reservedAt.Time, "lease", lease)
	return BackupReservation{State: BackupUnknown}, true, nil
}

// retakeBackup makes the unknown row id pending again under token. The
// UPDATE is conditional on the row still being unknown: of two repeats
// racing for it one takes it, and the other (0 rows) looks again and finds
// it pending.
func (s *Store) retakeBackup(ctx context.Context, tx *sql.Tx, id int64, token string, now time.Time) (BackupReservation, bool, error) {
	r, err := tx.ExecContext(ctx, `
		UPDATE backups SET state = 'pending', reason = '', reservation_token = $1, reserved_at = $2
		WHERE id = $3 AND state = 'unknown'`,
		token, s.dialect.timeArg(now), id)
	if err != nil {
		return BackupReservation{}, false, fmt.Errorf("registry: retake backup reservation: %w", err)
	}
	if n, err := r.RowsAffected(); err != nil || n != 1 {
		return BackupReservation{}, false, err // taken meanwhile: look again
	}
	s.log.InfoContext(ctx, "registry: backup reservation with an unknown outcome taken over by a repeat of its request")
	return BackupReservation{State: BackupReserved, Token: token, AfterUnknown: true}, true, nil
}

// checkBackup validates b and returns it normalised: lowercase checksum,
// UTC microsecond StoredAt (now when zero).
func (s *Store) checkBackup(b Backup) (Backup, error) {
	for _, f := range []struct {
		name, value string
		required    bool
	}{
		{"backup_id", b.BackupID, true},
		{"key_id", b.KeyID, true},
		{"customer_id", b.CustomerID, false},
		{"package_id", b.PackageID, false},
		{"caller", b.Caller, false},
		{"metadata.description", b.Metadata.Description, false},
		{"metadata.content_type", b.Metadata.ContentType, false},
		{"metadata.original_filename", b.Metadata.OriginalFilename, false},
	} {
		if err := checkText(f.name, f.value, f.required); err != nil {
			return b, err
		}
	}
	if b.BackupType != "data" && b.BackupType != "file" {
		return b, fmt.Errorf(`%w: backup_type must be "data" or "file"`, ErrInvalidArgument)
	}
	if b.SizeBytes < 0 {
		return b, fmt.Errorf("%w: size_bytes is negative", ErrInvalidArgument)
	}
	switch {
	case b.BackupType == "data" && b.Checksum != "":
		return b, fmt.Errorf("%w: a data backup is recorded without a checksum: its checksum is the plaintext's, which the registry never keeps", ErrInvalidArgument)
	case b.BackupType == "file":
		checksum, err := lowerHex("checksum_sha256", b.Checksum, 64)
		if err != nil {
			return b, err
		}
		b.Checksum = checksum
	}
	if b.StoredAt.IsZero() {
		b.StoredAt = s.now()
	} else {
		b.StoredAt = b.StoredAt.UTC().Truncate(time.Microsecond)
	}
	return b, nil
}

// resolveBackupKey checks that b names a recorded key and fills the key's
// customer and package in when b leaves them empty, so listings by customer
// find every backup.
func (s *Store) resolveBackupKey(ctx context.Context, tx *sql.Tx, b *Backup) error {
	var customerID, packageID string
	err := s.stmts.backupKey.queryRowTx(ctx, tx,
		b.KeyID).Scan(&customerID, &packageID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: the backup's key is not recorded", ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("registry: look up backup key: %w", err)
	}
	if b.CustomerID == "" {
		b.CustomerID = customerID
	} else if b.CustomerID != customerID {
		return fmt.Errorf("%w: customer_id differs from the key's customer", ErrInvalidArgument)
	}
	if b.PackageID == "" {
		b.PackageID = packageID
	}
	return nil
}

// CompleteBackup records the backup on the reservation.
//
// b.KeyID must name a recorded key (ErrNotFound); b.CustomerID and
// b.PackageID default to the key's. b.IdempotencyKey is not read: the
// reservation's key is kept. A backup id already recorded is ErrDuplicate
// and leaves the reservation held.
func (s *Store) CompleteBackup(ctx context.Context, token string, b Backup) (err error) {
	ctx, end := s.tel.start(ctx, "CompleteBackup")
	defer func() { end(err, "") }()

	if err := checkToken(token); err != nil {
		return err
	}
	b, err = s.checkBackup(b)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.resolveBackupKey(ctx, tx, &b); err != nil {
			return err
		}
		r, err := s.stmts.completeBackup.execTx(ctx, tx,
			b.BackupID, b.BackupType, b.KeyID, b.CustomerID, b.PackageID,
			nullable(b.Checksum), b.SizeBytes, b.Metadata.Description, b.Metadata.ContentType,
			b.Metadata.OriginalFilename, b.Caller, s.dialect.timeArg(b.StoredAt), token)
		if err := s.backupWriteError(err); err != nil {
			return err
		}
		return expectOneRow(r, err, "complete backup")
	})
}

// ReleaseBackup deletes the reservation: upstream certainly stored nothing.
func (s *Store) ReleaseBackup(ctx context.Context, token string) (err error) {
	ctx, end := s.tel.start(ctx, "ReleaseBackup")
	defer func() { end(err, "") }()

	if err := checkToken(token); err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx,
			`DELETE FROM backups WHERE reservation_token = $1 AND state = 'pending'`, token)
		return expectOneRow(r, err, "release backup")
	})
}

// FailBackup parks the reservation in state unknown with a reason for
// operators: upstream's answer was lost, so it may or may not hold the
// backup. A later ReserveBackup of the same request (same key and hash)
// takes the row over and stores again (an extra copy upstream is
// acceptable; a lost backup is not). The reason is stored as FailAssignment stores
// its own.
func (s *Store) FailBackup(ctx context.Context, token, reason string) (err error) {
	ctx, end := s.tel.start(ctx, "FailBackup")
	defer func() { end(err, "") }()

	if err := checkToken(token); err != nil {
		return err
	}
	reason = operatorReason(reason)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `
			UPDATE backups SET state = 'unknown', reason = $1, reservation_token = NULL
			WHERE reservation_token = $2 AND state = 'pending'`,
			reason, token)
		return expectOneRow(r, err, "fail backup")
	})
}

// RecordBackup records a backup made without an idempotency key.
//
// b.KeyID must name a recorded key (ErrNotFound); a backup id already
// recorded is ErrDuplicate.
func (s *Store) RecordBackup(ctx context.Context, b Backup) (err error) {
	ctx, end := s.tel.start(ctx, "RecordBackup")
	defer func() { end(err, "") }()

	if b.IdempotencyKey != "" {
		return fmt.Errorf("%w: a backup with an idempotency key is recorded by ReserveBackup and CompleteBackup", ErrInvalidArgument)
	}
	b, err = s.checkBackup(b)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.resolveBackupKey(ctx, tx, &b); err != nil {
			return err
		}
		_, err := s.stmts.recordBackup.execTx(ctx, tx,
			b.BackupID, b.BackupType, b.KeyID, b.CustomerID, b.PackageID,
			nullable(b.Checksum), b.SizeBytes, b.Metadata.Description, b.Metadata.ContentType,
			b.Metadata.OriginalFilename, b.Caller, s.dialect.timeArg(b.StoredAt))
		if err := s.backupWriteError(err); err != nil {
			return err
		}
		return nil
	})
}

// backupWriteError classifies the error of a statement that writes a
// stored backup.
func (s *Store) backupWriteError(err error) error {
	switch {
	case err == nil:
		return nil
	case s.dialect.uniqueViolation(err):
		return fmt.Errorf("%w: backup id is recorded already", ErrDuplicate)
	case s.dialect.foreignKeyViolation(err):
		return fmt.Errorf("%w: the backup's key is not recorded", ErrNotFound)
	default:
		return fmt.Errorf("registry: record backup: %w", err)
	}
}

// nullable is v, or NULL when v is empty.
func nullable(v string) sql.NullString {
	return sql.NullString{String: v, Valid: v != ""}
}
