package service

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
)

// fileUploadLease is the reservation lease of a SecureFile with an
// idempotency key: longer than the adapter's default file timeout (10m), so
// a slow upload is not mistaken for a lost one.
const fileUploadLease = 15 * time.Minute

// requestHash identifies a backup request's content for the idempotency
// check: the backup type, key, checksum and metadata. Two requests with the
// same idempotency key and hash are the same request.
//
// NOTE: an HMAC-SHA256 under hashKey (recoveryd's --registry-hmac-key-file),
// never a bare SHA-256: a SecureData checksum is the plaintext's, and a
// digest of it kept in the registry would let whoever reads the registry
// brute-force a low-entropy secret offline. Without the key the stored
// value tells nothing.
func requestHash(hashKey []byte, backupType, keyID, checksum string, m registry.BackupMetadata) string {
	h := hmac.New(sha256.New, hashKey)
	for _, part := range []string{backupType, keyID, checksum, m.Description, m.ContentType, m.OriginalFilename} {
		// Length-prefixed so that no two different field lists hash alike.
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// autoKeyPrefix marks the idempotency keys recoveryd makes for a store the
// caller sent without one.
const autoKeyPrefix = "recoveryd-auto-"

// reserveBackup writes the pending record of a store before the upstream is
// touched, claiming (caller, idempotencyKey): a store whose record cannot be
// written fails here, having changed nothing. A request without an
// idempotency key gets one of its own, which nobody can repeat. It returns
// the recorded backup on a repeat, or the reservation token to store with.
//
// A repeat of a request whose outcome was unknown (BACKUP_OUTCOME_UNKNOWN)
// gets a token too: the registry handed its row over, and the store is sent
// again. The upstream may then hold an extra copy, which is acceptable
// (issue 9 §2) where a backup acknowledged to nobody is not; it is logged
// and counted as recovery.backups{outcome="resent_after_unknown"}.
func (s *Server) reserveBackup(ctx context.Context, backupType, scope, idempotencyKey, hash string, lease time.Duration) (*registry.Backup, string, error) {
	if idempotencyKey == "" {
		idempotencyKey = autoKeyPrefix + rand.Text()
	}
	res, err := s.backups.ReserveBackup(ctx, scope, idempotencyKey, hash, lease)
	if err != nil {
		return nil, "", registryFailure(err)
	}
	switch res.State {
	case registry.BackupReserved:
		if res.AfterUnknown {
			annotate(ctx, attribute.Bool("resent_after_unknown", true))
			s.log.LogAttrs(ctx, slog.LevelWarn, "storing again a backup whose earlier outcome is unknown: the upstream may hold an extra copy",
				slog.String("backup_type", backupType))
			s.metrics.backup(ctx, backupType, outcomeResentAfterUnknown)
		}
		return nil, res.Token, nil
	case registry.BackupRecorded:
		if res.Backup == nil {
			return nil, "", errors.New("registry reported a recorded backup without the backup")
		}
		annotate(ctx, attribute.String("backup_id", res.Backup.BackupID), attribute.Bool("repeat", true))
		s.metrics.backup(ctx, res.Backup.BackupType, "repeat")
		return res.Backup, "", nil
	case registry.BackupInProgress:
		f := fail(ReasonRequestInProgress, errors.New("another request holds this idempotency key"))
		f.retryAfter = inProgressRetryDelay
		return nil, "", f
	case registry.BackupConflict:
		return nil, "", fail(ReasonIdempotencyKeyReused, errors.New("idempotency key used for a different request"))
	case registry.BackupUnknown:
		// NOTE: only a row whose request hash migration 0005 erased: this
		// request cannot be shown to be the one that row was reserved for.
		return nil, "", fail(ReasonBackupOutcomeUnknown, errors.New("an earlier request with this idempotency key, recorded before migration 0005, has an unknown outcome"))
	default:
		return nil, "", fmt.Errorf("registry returned backup state %d", res.State)
	}
}

// recordBackup completes the pending record of a backup the upstream
// confirmed. Only a complete record is acknowledged: when it cannot be
// written the caller is told the outcome is unknown (the upstream holds the
// backup, recoveryd has no record of it), never OK.
//
// The record commits together with the call's audit record (recordedWrite).
func (s *Server) recordBackup(ctx context.Context, token string, b *registry.Backup) error {
	write := recordedWrite(ctx, WriteSubject{CustomerID: b.CustomerID, PackageID: b.PackageID, KeyID: b.KeyID, BackupID: b.BackupID})
	err := s.backups.CompleteBackup(write, token, *b)
	if errors.Is(err, registry.ErrReservationLost) {
		// The lease ran out mid-request; keep at least the record of the
		// backup, without the idempotency key it no longer owns.
		unkeyed := *b
		unkeyed.IdempotencyKey = ""
		err = s.backups.RecordBackup(write, unkeyed)
	}
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "backup stored upstream but not recorded",
			slog.String("backup_id", b.BackupID), slog.String("key_id", b.KeyID),
			slog.String("customer_id", b.CustomerID), slog.String("error", err.Error()))
		s.metrics.backup(ctx, b.BackupType, "unrecorded")
		// Park the reservation as unknown, so that a retry under the same
		// key stores again at once rather than after the lease; if this
		// fails too, the row turns unknown when its lease ends.
		if ferr := s.backups.FailBackup(ctx, token, fmt.Sprintf("stored upstream as %s but not recorded: %v", b.BackupID, err)); ferr != nil && !errors.Is(ferr, registry.ErrReservationLost) {
			s.log.LogAttrs(ctx, slog.LevelError, "parking a backup reservation failed",
				slog.String("error", ferr.Error()))
		}
		return fail(ReasonBackupOutcomeUnknown, fmt.Errorf("recording backup %s: %w", b.BackupID, err))
	}
	s.metrics.backup(ctx, b.BackupType, "stored")
	return nil
}

// backupFailed settles the pending record after the store failed and
// returns what the caller is told: err itself when the upstream certainly
// stored nothing (the record is released, so a retry may store), and
// BACKUP_OUTCOME_UNKNOWN when it may have (the record is parked as unknown:
// a retry must not be told "nothing was stored").
func (s *Server) backupFailed(ctx context.Context, token string, storedNothing bool, err error) error {
	if ue, ok := errors.AsType[*upstream.Error](err); ok && ue.NothingDone() {
		storedNothing = true
	}
	if storedNothing {
		if rerr := s.backups.ReleaseBackup(ctx, token); rerr != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "releasing a backup reservation failed",
				slog.String("error", rerr.Error()))
		}
		return err
	}
	s.log.LogAttrs(ctx, slog.LevelError, "backup outcome unknown",
		slog.String("error", err.Error()))
	if ferr := s.backups.FailBackup(ctx, token, fmt.Sprintf("upstream store failed after it may have been sent: %v", err)); ferr != nil {
		// The row stays pending and turns unknown when its lease ends.
		s.log.LogAttrs(ctx, slog.LevelError, "parking a backup reservation failed",
			slog.String("error", ferr.Error()))
	}
	return fail(ReasonBackupOutcomeUnknown, err)
}
