package app

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/audit"
	"github.com/walletprovider/recoveryservice/service/registry"
)

// writeRecordsFail is the registry as the audit writer sees it, whose
// transactions carrying a call's write fail while on is set: the write's
// audit record cannot be committed, though other records can.
type writeRecordsFail struct {
	audit.Store
	on atomic.Bool
}

func (f *writeRecordsFail) AppendAuditWrites(ctx context.Context, c *registry.AuditChain, entries []registry.AuditEntry, durable bool) ([]error, error) {
	if f.on.Load() && slices.ContainsFunc(entries, func(e registry.AuditEntry) bool { return e.Write != nil }) {
		return nil, errors.New("disk I/O error")
	}
	return f.Store.AppendAuditWrites(ctx, c, entries, durable)
}

// TestAWriteCommitsWithItsAuditRecord: a SecureData's backup is recorded
// in the transaction of the call's audit record. In production, when that
// record cannot be committed, the backup is not recorded either (the
// caller is told its outcome is unknown, and a retry with the same
// idempotency key records it with its record); development records the
// backup anyway and warns.
func TestAWriteCommitsWithItsAuditRecord(t *testing.T) {
	for _, production := range []bool{true, false} {
		name := map[bool]string{true: "production", false: "development"}[production]
		t.Run(name, func(t *testing.T) {
			for _, v := range []string{"SSL_CERT_FILE", "SSL_CERT_DIR", "GODEBUG"} {
				t.Setenv(v, "")
			}
			log, logs := newTestLogger(t)
			up := startUpstreamWith(t, upstreamOptions{dir: t.TempDir(), log: log, tls: true})
			cfg := remoteConfig(t, up, t.TempDir())
			cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI)
			if production {
				cfg.Environment = EnvProduction
				cfg.TLSTerminatedByProxy = true
				cfg.RegistryHMACKeyFile = writeRegistryHMACKey(t)
				cfg.VerificationKeyFingerprints = strings.Join(signingKeyFingerprints(t, up), ",")
			}
			store := openTestRegistry(t)
			failing := &writeRecordsFail{}
			srv := startReady(t, cfg, log, Options{Registry: store, AuditStore: func(s audit.Store) audit.Store {
				failing.Store = s
				return failing
			}})
			ctx := withToken(testCtx(t), walletAPI.token)
			key, err := srv.client.AssignKey(ctx, assignKeyRequest("user-write-audit", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
			if err != nil {
				t.Fatal(err)
			}
			req := secureDataByKeyID(key.GetKey().GetKeyId(), []byte("write-audit plaintext: amber kettle 5512"))
			req.IdempotencyKey = "write-audit-1"

			failing.on.Store(true)
			answer, err := srv.client.SecureData(ctx, req)
			stored := storedBackups(t, store)
			if production {
				wantStatus(t, err, codes.FailedPrecondition, "BACKUP_OUTCOME_UNKNOWN")
				if len(stored) != 0 {
					t.Fatalf("a backup was recorded without its audit record: %v", stored)
				}
				// A SecureFile the same (its handler reaches the recorder
				// through the stream's context).
				err = pastAuditUnavailable(func() error {
					_, err := sendFile(ctx, srv.client, fileHeader(key.GetKey().GetKeyId()), []byte("write-audit file bytes"))
					return err
				})
				wantStatus(t, err, codes.FailedPrecondition, "BACKUP_OUTCOME_UNKNOWN")
				if stored := storedBackups(t, store); len(stored) != 0 {
					t.Fatalf("a file backup was recorded without its audit record: %v", stored)
				}
				if n := len(up.Inspect.Backups(t)); n != 2 {
					t.Fatalf("upstream holds %d backups; want the two whose records failed", n)
				}
				// The same request again, once records can be written:
				// recorded, with its record.
				failing.on.Store(false)
				err = pastAuditUnavailable(func() error {
					var err error
					answer, err = srv.client.SecureData(ctx, req)
					return err
				})
				if err != nil {
					t.Fatalf("the retry with the same idempotency key: %v", err)
				}
				stored = storedBackups(t, store)
			} else {
				if err != nil {
					t.Fatalf("development must serve a write whose record cannot go with it: %v", err)
				}
				if !strings.Contains(logs.String(), "audit record not written") {
					t.Error("development recorded a write without its audit record and did not warn")
				}
			}
			backupID := answer.GetBackup().GetBackupId()
			if len(stored) != 1 || stored[0] != backupID {
				t.Fatalf("recorded backups = %v; want only %s", stored, backupID)
			}
			if err := srv.stop(); err != nil {
				t.Fatal(err)
			}
			var oks int
			for _, e := range allAuditEvents(t, store) {
				if strings.HasSuffix(e.Method, "/SecureData") && e.Code == "OK" {
					oks++
					if e.BackupID != backupID || e.KeyID != key.GetKey().GetKeyId() || !slices.Equal(e.Organisations, []string{testCustomerID}) || e.PackageID != testPackageID {
						t.Errorf("the backup's record = %+v; want backup %s of key %s, %s, %s", e, backupID, key.GetKey().GetKeyId(), testCustomerID, testPackageID)
					}
				}
			}
			if oks != 1 {
				t.Errorf("%d OK SecureData records; want the one backup's", oks)
			}
			if rep, err := store.VerifyAudit(context.Background()); err != nil || rep.Broken != nil {
				t.Errorf("verify: %+v, %v", rep, err)
			}
		})
	}
}

// storedBackups lists the ids of the backups the registry records as
// stored.
func storedBackups(t *testing.T, store *registry.Store) []string {
	t.Helper()
	backups, _, err := store.ListBackups(context.Background(), registry.BackupFilter{}, registry.Page{Size: registry.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, len(backups))
	for _, b := range backups {
		ids = append(ids, b.BackupID)
	}
	return ids
}

// pastAuditUnavailable makes call until it is not refused AUDIT_UNAVAILABLE
// (at most 100 times, 20 ms apart): after a failed commit the audit writer
// refuses calls until its next commit succeeds, and a caller retries after
// the RetryInfo delay.
func pastAuditUnavailable(call func() error) error {
	var err error
	for range 100 {
		if err = call(); err == nil {
			return nil
		}
		if reason, _ := errorDetails(err); reason != "AUDIT_UNAVAILABLE" {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}
