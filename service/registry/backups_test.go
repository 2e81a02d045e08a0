package registry

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBackupIdempotency(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		clock := newTestClock()
		s := db.mustOpen(t, WithClock(clock.Now))
		ctx := context.Background()
		key := assignKey(t, s, terms(1, 1), testKey(1))
		const lease = time.Minute

		reserve := func(scope, idem, hash string) BackupReservation {
			t.Helper()
			res, err := s.ReserveBackup(ctx, scope, idem, hash, lease)
			if err != nil {
				t.Fatalf("ReserveBackup(%q, %q, %q): %v", scope, idem, hash, err)
			}
			return res
		}

		first := reserve("wallet-api", "idem-1", "hash-a")
		if first.State != BackupReserved || first.Token == "" {
			t.Fatalf("first reserve = %+v; want reserved with a token", first)
		}
		if got := reserve("wallet-api", "idem-1", "hash-a"); got.State != BackupInProgress || got.Token != "" {
			t.Errorf("repeat while pending = %+v; want in progress", got)
		}
		if got := reserve("wallet-api", "idem-1", "hash-b"); got.State != BackupConflict {
			t.Errorf("other request, same key = %+v; want conflict", got)
		}
		// The key is scoped by caller: another caller's identical key is its own.
		other := reserve("other-service", "idem-1", "hash-b")
		if other.State != BackupReserved {
			t.Errorf("same key, other caller = %+v; want reserved", other)
		}
		if got := reserve("", "idem-1", "hash-c"); got.State != BackupReserved {
			t.Errorf("same key, no caller = %+v; want reserved", got)
		}

		clock.Advance(5 * time.Second)
		b := testBackup(1, key.KeyID)
		b.IdempotencyKey = "ignored: the reservation's key is kept"
		if err := s.CompleteBackup(ctx, first.Token, b); err != nil {
			t.Fatalf("CompleteBackup: %v", err)
		}
		want := b
		want.Checksum = strings.ToLower(b.Checksum)
		want.CustomerID, want.PackageID = key.CustomerID, key.PackageID
		want.StoredAt = clock.Now().Truncate(time.Microsecond)
		want.IdempotencyKey = "idem-1"

		rec := reserve("wallet-api", "idem-1", "hash-a")
		if rec.State != BackupRecorded || rec.Backup == nil || *rec.Backup != want {
			t.Fatalf("repeat after completion = %+v (%+v)\nwant recorded %+v", rec, rec.Backup, want)
		}
		if got := reserve("wallet-api", "idem-1", "hash-b"); got.State != BackupConflict {
			t.Errorf("other request after completion = %+v; want conflict", got)
		}
		if err := s.CompleteBackup(ctx, first.Token, testBackup(2, key.KeyID)); !errors.Is(err, ErrReservationLost) {
			t.Errorf("CompleteBackup with a spent token: %v, want ErrReservationLost", err)
		}

		// Release: upstream stored nothing, so the key may be used again.
		if err := s.ReleaseBackup(ctx, other.Token); err != nil {
			t.Fatalf("ReleaseBackup: %v", err)
		}
		if got := reserve("other-service", "idem-1", "hash-z"); got.State != BackupReserved {
			t.Errorf("after release = %+v; want reserved", got)
		}
		if err := s.ReleaseBackup(ctx, other.Token); !errors.Is(err, ErrReservationLost) {
			t.Errorf("second ReleaseBackup: %v, want ErrReservationLost", err)
		}

		// Fail: upstream's answer was lost. Another request under the key
		// is still refused; a repeat of the same request takes the row
		// over under a new token, is recorded once, and the failed
		// request's token stays spent.
		lost := reserve("wallet-api", "idem-2", "hash-a")
		if err := s.FailBackup(ctx, lost.Token, "upstream timed out after the body was sent"); err != nil {
			t.Fatalf("FailBackup: %v", err)
		}
		if got := reserve("wallet-api", "idem-2", "hash-b"); got.State != BackupConflict {
			t.Errorf("other request after FailBackup = %+v; want conflict", got)
		}
		retry := reserve("wallet-api", "idem-2", "hash-a")
		if retry.State != BackupReserved || !retry.AfterUnknown || retry.Token == "" || retry.Token == lost.Token {
			t.Fatalf("repeat after FailBackup = %+v; want reserved after unknown, with a new token", retry)
		}
		if got := reserve("wallet-api", "idem-2", "hash-a"); got.State != BackupInProgress {
			t.Errorf("repeat while the retry is pending = %+v; want in progress", got)
		}
		if err := s.CompleteBackup(ctx, lost.Token, testBackup(3, key.KeyID)); !errors.Is(err, ErrReservationLost) {
			t.Errorf("CompleteBackup after FailBackup: %v, want ErrReservationLost", err)
		}
		if err := s.CompleteBackup(ctx, retry.Token, testBackup(3, key.KeyID)); err != nil {
			t.Fatalf("CompleteBackup of the retry: %v", err)
		}
		if got := reserve("wallet-api", "idem-2", "hash-a"); got.State != BackupRecorded || got.Backup == nil ||
			got.Backup.BackupID != testBackup(3, key.KeyID).BackupID || got.Backup.IdempotencyKey != "idem-2" {
			t.Errorf("repeat after the retry was recorded = %+v (%+v); want recorded %s", got, got.Backup, testBackup(3, key.KeyID).BackupID)
		}

		// Lease expiry: the next reserve marks the pending row unknown.
		stale := reserve("wallet-api", "idem-3", "hash-a")
		clock.Advance(lease - time.Microsecond)
		if got := reserve("wallet-api", "idem-3", "hash-a"); got.State != BackupInProgress {
			t.Errorf("just inside the lease = %+v; want in progress", got)
		}
		clock.Advance(time.Microsecond)
		if got := reserve("wallet-api", "idem-3", "hash-b"); got.State != BackupConflict {
			t.Errorf("other request at the lease's end = %+v; want conflict", got)
		}
		taken := reserve("wallet-api", "idem-3", "hash-a")
		if taken.State != BackupReserved || !taken.AfterUnknown || taken.Token == stale.Token {
			t.Errorf("repeat at the lease's end = %+v; want reserved after unknown, with a new token", taken)
		}
		if got := reserve("wallet-api", "idem-3", "hash-a"); got.State != BackupInProgress {
			t.Errorf("repeat while the taken-over row is pending = %+v; want in progress", got)
		}
		if err := s.CompleteBackup(ctx, stale.Token, testBackup(4, key.KeyID)); !errors.Is(err, ErrReservationLost) {
			t.Errorf("CompleteBackup after expiry: %v, want ErrReservationLost", err)
		}
		if err := s.FailBackup(ctx, stale.Token, "late"); !errors.Is(err, ErrReservationLost) {
			t.Errorf("FailBackup after expiry: %v, want ErrReservationLost", err)
		}

		// Only the completed backups are listed: reservations never are.
		list, _, err := s.ListBackups(ctx, BackupFilter{}, Page{})
		if err != nil || len(list) != 2 || !slices.Contains(list, want) {
			t.Errorf("ListBackups = %+v, %v; want %+v and the retried backup", list, err, want)
		}
	})
}

func TestConcurrentBackupReservationsMakeOneWinner(t *testing.T) {
	const callers = 50
	forEachBackend(t, func(t *testing.T, db testDB) {
		replicas := []*Store{db.mustOpen(t), db.mustOpen(t)}
		ctx := context.Background()
		states := make([]BackupState, callers)
		errs := make([]error, callers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				var res BackupReservation
				res, errs[i] = replicas[i%2].ReserveBackup(ctx, "wallet-api", "idem-race", "hash", time.Hour)
				states[i] = res.State
			}()
		}
		close(start)
		wg.Wait()
		counts := map[BackupState]int{}
		for i := range callers {
			if errs[i] != nil {
				t.Fatalf("caller %d: %v", i, errs[i])
			}
			counts[states[i]]++
		}
		if counts[BackupReserved] != 1 || counts[BackupInProgress] != callers-1 {
			t.Errorf("states = %v; want exactly 1 reserved and %d in progress", counts, callers-1)
		}
	})
}

// TestConcurrentRetriesAfterUnknownMakeOneWinner: repeats of a request
// whose outcome is unknown race for its row on two replicas; exactly one
// takes it over (and stores again), the others find it in progress.
func TestConcurrentRetriesAfterUnknownMakeOneWinner(t *testing.T) {
	const callers = 50
	forEachBackend(t, func(t *testing.T, db testDB) {
		replicas := []*Store{db.mustOpen(t), db.mustOpen(t)}
		ctx := context.Background()
		first, err := replicas[0].ReserveBackup(ctx, "wallet-api", "idem-unknown", "hash", time.Hour)
		if err != nil || first.State != BackupReserved {
			t.Fatalf("first ReserveBackup = %+v, %v", first, err)
		}
		if err := replicas[0].FailBackup(ctx, first.Token, "answer lost"); err != nil {
			t.Fatal(err)
		}
		results := make([]BackupReservation, callers)
		errs := make([]error, callers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				<-start
				results[i], errs[i] = replicas[i%2].ReserveBackup(ctx, "wallet-api", "idem-unknown", "hash", time.Hour)
			})
		}
		close(start)
		wg.Wait()
		counts := map[BackupState]int{}
		for i, res := range results {
			if errs[i] != nil {
				t.Fatalf("caller %d: %v", i, errs[i])
			}
			if res.State == BackupReserved && !res.AfterUnknown {
				t.Errorf("caller %d reserved without AfterUnknown", i)
			}
			counts[res.State]++
		}
		if counts[BackupReserved] != 1 || counts[BackupInProgress] != callers-1 {
			t.Errorf("states = %v; want exactly 1 reserved and %d in progress", counts, callers-1)
		}
	})
}

func TestRecordBackup(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s := db.mustOpen(t)
		ctx := context.Background()
		key := assignKey(t, s, terms(2, 1), testKey(2))

		b := testBackup(1, key.KeyID)
		b.StoredAt = time.Date(2026, 2, 3, 4, 5, 6, 789123456, time.FixedZone("CET", 3600))
		if err := s.RecordBackup(ctx, b); err != nil {
			t.Fatalf("RecordBackup: %v", err)
		}
		want := b
		want.Checksum = strings.ToLower(b.Checksum)
		want.CustomerID, want.PackageID = key.CustomerID, key.PackageID
		want.StoredAt = b.StoredAt.UTC().Truncate(time.Microsecond)
		list, next, err := s.ListBackups(ctx, BackupFilter{KeyID: key.KeyID}, Page{})
		if err != nil || next != "" || len(list) != 1 || list[0] != want {
			t.Fatalf("ListBackups = %+v, %q, %v; want only %+v", list, next, err, want)
		}

		explicit := testBackup(2, key.KeyID)
		explicit.CustomerID, explicit.PackageID = key.CustomerID, "package-of-the-request"
		if err := s.RecordBackup(ctx, explicit); err != nil {
			t.Errorf("RecordBackup with the key's customer: %v", err)
		}

		mod := func(f func(*Backup)) Backup { b := testBackup(9, key.KeyID); f(&b); return b }
		refused := []struct {
			name    string
			backup  Backup
			wantErr error
		}{
			{"duplicate backup id", mod(func(b *Backup) { b.BackupID = testBackup(1, "").BackupID }), ErrDuplicate},
			{"unrecorded key", mod(func(b *Backup) { b.KeyID = "key-none" }), ErrNotFound},
			{"other customer", mod(func(b *Backup) { b.CustomerID = "customer-other" }), ErrInvalidArgument},
			{"idempotency key", mod(func(b *Backup) { b.IdempotencyKey = "idem" }), ErrInvalidArgument},
			{"empty backup id", mod(func(b *Backup) { b.BackupID = "" }), ErrInvalidArgument},
			{"empty key id", mod(func(b *Backup) { b.KeyID = "" }), ErrInvalidArgument},
			{"unknown type", mod(func(b *Backup) { b.BackupType = "blob" }), ErrInvalidArgument},
			{"negative size", mod(func(b *Backup) { b.SizeBytes = -1 }), ErrInvalidArgument},
			{"short checksum", mod(func(b *Backup) { b.Checksum = b.Checksum[:10] }), ErrInvalidArgument},
			{"non-hex checksum", mod(func(b *Backup) { b.Checksum = "Z" + b.Checksum[1:] }), ErrInvalidArgument},
			{"file without checksum", mod(func(b *Backup) { b.Checksum = "" }), ErrInvalidArgument},
			{"data with a checksum", mod(func(b *Backup) { b.BackupType = "data" }), ErrInvalidArgument},
			{"NUL in filename", mod(func(b *Backup) { b.Metadata.OriginalFilename = "a\x00.txt" }), ErrInvalidArgument},
		}
		for _, tt := range refused {
			if err := s.RecordBackup(ctx, tt.backup); !errors.Is(err, tt.wantErr) {
				t.Errorf("RecordBackup(%s): %v, want %v", tt.name, err, tt.wantErr)
			}
		}
		// Nothing the refused calls carried was stored.
		list, _, err = s.ListBackups(ctx, BackupFilter{}, Page{})
		if err != nil || len(list) != 2 {
			t.Errorf("after refused records: %d backups, %v; want 2", len(list), err)
		}

		// CompleteBackup refuses the same way and keeps the reservation.
		res, err := s.ReserveBackup(ctx, "wallet-api", "idem-x", "hash", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range refused[:3] {
			if err := s.CompleteBackup(ctx, res.Token, tt.backup); !errors.Is(err, tt.wantErr) {
				t.Errorf("CompleteBackup(%s): %v, want %v", tt.name, err, tt.wantErr)
			}
		}
		if err := s.CompleteBackup(ctx, res.Token, testBackup(3, key.KeyID)); err != nil {
			t.Errorf("valid CompleteBackup after refused ones: %v", err)
		}
	})
}

func TestBackupReservationInputIsValidated(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s := db.mustOpen(t)
		ctx := context.Background()
		tests := []struct {
			name, scope, idem, hash string
			lease                   time.Duration
		}{
			{"empty idempotency key", "wallet-api", "", "hash", time.Minute},
			{"empty request hash", "wallet-api", "idem", "", time.Minute},
			{"NUL in scope", "wallet\x00api", "idem", "hash", time.Minute},
			{"oversized idempotency key", "wallet-api", strings.Repeat("k", maxTextLen+1), "hash", time.Minute},
			{"zero lease", "wallet-api", "idem", "hash", 0},
		}
		for _, tt := range tests {
			if res, err := s.ReserveBackup(ctx, tt.scope, tt.idem, tt.hash, tt.lease); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("ReserveBackup(%s) = %+v, %v; want ErrInvalidArgument", tt.name, res, err)
			}
		}
		if res, err := s.ReserveBackup(ctx, "wallet-api", "idem", "hash", time.Minute); err != nil || res.State != BackupReserved {
			t.Errorf("valid ReserveBackup after refused ones = %+v, %v; want reserved", res, err)
		}
		for name, call := range map[string]func() error{
			"complete": func() error { return s.CompleteBackup(ctx, "", testBackup(1, "k")) },
			"release":  func() error { return s.ReleaseBackup(ctx, "") },
			"fail":     func() error { return s.FailBackup(ctx, "", "x") },
		} {
			if err := call(); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%s with an empty token: %v, want ErrInvalidArgument", name, err)
			}
		}
	})
}

// TestUnknownBackupWithAnErasedHashStaysUnknown: a row whose request hash
// migration 0005 erased cannot show that a repeat is the same request, so
// it is not taken over: unknown stays unknown, and a pending row whose
// lease ran out becomes unknown.
func TestUnknownBackupWithAnErasedHashStaysUnknown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		clock := newTestClock()
		s := db.mustOpen(t, WithClock(clock.Now))
		ctx := context.Background()
		const lease = time.Minute
		failed, err := s.ReserveBackup(ctx, "wallet-api", "idem-failed", "hash", lease)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.FailBackup(ctx, failed.Token, "answer lost"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReserveBackup(ctx, "wallet-api", "idem-stale", "hash", lease); err != nil {
			t.Fatal(err)
		}
		if _, err := s.write.ExecContext(ctx, `UPDATE backups SET request_hash = $1`, erasedRequestHash); err != nil {
			t.Fatal(err)
		}
		clock.Advance(lease)
		for _, idem := range []string{"idem-failed", "idem-stale", "idem-stale"} {
			res, err := s.ReserveBackup(ctx, "wallet-api", idem, "hash", lease)
			if err != nil || res.State != BackupUnknown {
				t.Errorf("repeat of %s = %+v, %v; want unknown", idem, res, err)
			}
		}
	})
}
