package service_test

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/service/registry/registrytest"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// faultSeedFirstThree is a fault seed whose first three draws (0.27, 0.35,
// 0.48) are under 0.5 and whose fourth (0.68) is not: with a fault of
// probability 0.5 on one path only, a store's attempt and both its
// adapter retries fail, and the next request passes.
const faultSeedFirstThree = 16

// retryBackends are the registries a retry after an unknown outcome is
// tested on: a real SQLite file and a real PostgreSQL.
var retryBackends = []struct {
	name string
	open func(t *testing.T) *registry.Store
}{
	{"sqlite", func(t *testing.T) *registry.Store {
		s, err := registry.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "registry.db"), registry.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}},
	{"postgresql", func(t *testing.T) *registry.Store {
		s, err := registry.OpenPostgres(t.Context(), registrytest.Postgres(t), registry.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}},
}

// resentAfterUnknown is the recovery_backups_total series of stores sent
// again after an unknown outcome.
func resentAfterUnknown(backupType string) map[string]string {
	return map[string]string{"backup_type": backupType, "outcome": "resent_after_unknown"}
}

// TestSecureDataRetryAfterUnknownOutcome: a SecureData whose every upstream
// attempt stored the backup but lost its answer (the emulator's reset-after
// or truncated) is answered BACKUP_OUTCOME_UNKNOWN; retried with the same
// idempotency_key and request it is stored again and answered OK, the
// registry holds exactly one backup for the key, the upstream holds it
// (with the first call's copies), and the resend is counted. A further
// repeat answers the same backup without storing; another request under
// the key is still refused.
func TestSecureDataRetryAfterUnknownOutcome(t *testing.T) {
	for _, backend := range retryBackends {
		for _, kind := range []string{sandbox.FaultResetAfter, sandbox.FaultTruncated} {
			t.Run(backend.name+"/"+kind, func(t *testing.T) {
				f := newFixture(t, fixtureOptions{
					store:      backend.open(t),
					faults:     map[string]float64{kind: 0.5},
					faultPaths: []string{secureDataPath},
					faultSeed:  faultSeedFirstThree,
				})
				key := f.mustAssign("user-1", "org-1")
				req := func(plaintext string) *recoveryv1.SecureDataRequest {
					return &recoveryv1.SecureDataRequest{
						Key:            &recoveryv1.SecureDataRequest_KeyId{KeyId: key.GetKeyId()},
						Payload:        &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte(plaintext)},
						IdempotencyKey: "unknown-then-retried",
					}
				}
				_, err := f.client.SecureData(t.Context(), req("the share"))
				wantStatus(t, err, codes.FailedPrecondition, service.ReasonBackupOutcomeUnknown)
				if n := f.inspect.Faults(t).Injected[kind]; n != 3 {
					t.Fatalf("the sandbox injected %d %s faults, want 3: the first call's outcome was not unknown", n, kind)
				}
				if n := len(f.registryBackups()); n != 0 {
					t.Fatalf("registry recorded %d backups for an unknown outcome", n)
				}

				before := f.metrics(t)
				resp, err := f.client.SecureData(t.Context(), req("the share"))
				if err != nil {
					t.Fatalf("retry with the same idempotency_key: %v", err)
				}
				after := f.metrics(t)
				id := resp.GetBackup().GetBackupId()
				if got := f.inspect.Recover(t, id); string(got) != "the share" {
					t.Errorf("upstream recovers %q for %s", got, id)
				}
				recorded := f.registryBackups()
				if len(recorded) != 1 || recorded[0].BackupID != id || recorded[0].IdempotencyKey != "unknown-then-retried" {
					t.Errorf("registry holds %+v; want only backup %s under the idempotency key", recorded, id)
				}
				if n := len(f.inspect.Backups(t)); n != 4 {
					t.Errorf("upstream holds %d backups, want 4 (the first call's three attempts and the retry's)", n)
				}
				if d := after.counter("recovery_backups_total", resentAfterUnknown("data")) - before.counter("recovery_backups_total", resentAfterUnknown("data")); d != 1 {
					t.Errorf("resent_after_unknown grew by %v, want 1", d)
				}

				again, err := f.client.SecureData(t.Context(), req("the share"))
				if err != nil || again.GetBackup().GetBackupId() != id {
					t.Errorf("repeat after the retry = %v, %v; want backup %s", again.GetBackup(), err, id)
				}
				_, err = f.client.SecureData(t.Context(), req("another share"))
				wantStatus(t, err, codes.AlreadyExists, service.ReasonIdempotencyKeyReused)
				if n := len(f.inspect.Backups(t)); n != 4 {
					t.Errorf("upstream holds %d backups after the repeats, want still 4", n)
				}
				if n := len(f.registryBackups()); n != 1 {
					t.Errorf("registry holds %d backups after the repeats, want 1", n)
				}
			})
		}
	}
}

// TestSecureFileRetryAfterUnknownOutcome: the same for SecureFile, whose
// caller sends the whole stream again: the first upload's every attempt
// stored the file and lost its answer; the retry with the same
// idempotency_key stores it again, is answered OK and recorded once.
func TestSecureFileRetryAfterUnknownOutcome(t *testing.T) {
	file := pattern(2*service.MinChunkBytes+7, 21)
	for _, backend := range retryBackends {
		t.Run(backend.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{
				store:      backend.open(t),
				faults:     map[string]float64{sandbox.FaultResetAfter: 0.5},
				faultPaths: []string{sandbox.PathSecureFile},
				faultSeed:  faultSeedFirstThree,
			})
			key := f.mustAssign("user-1", "org-1")
			send := func() (*recoveryv1.SecureFileResponse, error) {
				h := byID(key)
				h.IdempotencyKey = "file-unknown-then-retried"
				h.Sha256 = sha256Hex(file)
				return f.sendFile(t.Context(), append([]*recoveryv1.SecureFileRequest{headerMsg(h)}, chunksOf(file, service.MinChunkBytes)...))
			}
			_, err := send()
			wantStatus(t, err, codes.FailedPrecondition, service.ReasonBackupOutcomeUnknown)
			if n := f.inspect.Faults(t).Injected[sandbox.FaultResetAfter]; n != 3 {
				t.Fatalf("the sandbox injected %d faults, want 3: the first upload's outcome was not unknown", n)
			}

			before := f.metrics(t)
			resp, err := send()
			if err != nil {
				t.Fatalf("retry with the same idempotency_key: %v", err)
			}
			after := f.metrics(t)
			id := resp.GetBackup().GetBackupId()
			if got := f.inspect.Content(t, id); !bytes.Equal(got, file) {
				t.Errorf("upstream holds %d bytes for %s, want the %d sent", len(got), id, len(file))
			}
			recorded := f.registryBackups()
			if len(recorded) != 1 || recorded[0].BackupID != id || recorded[0].IdempotencyKey != "file-unknown-then-retried" {
				t.Errorf("registry holds %+v; want only backup %s under the idempotency key", recorded, id)
			}
			if n := len(f.inspect.Backups(t)); n != 4 {
				t.Errorf("upstream holds %d backups, want 4 (the first upload's three attempts and the retry's)", n)
			}
			if d := after.counter("recovery_backups_total", resentAfterUnknown("file")) - before.counter("recovery_backups_total", resentAfterUnknown("file")); d != 1 {
				t.Errorf("resent_after_unknown grew by %v, want 1", d)
			}
		})
	}
}
