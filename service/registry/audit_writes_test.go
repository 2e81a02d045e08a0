package registry

import (
	"context"
	"errors"
	"testing"
	"time"
)

// errTaken ends a write method called under a capturing hook.
var errTaken = errors.New("taken by the test's hook")

// takeWrite calls write under a hook that keeps its statements instead of
// committing them, and returns them.
func takeWrite(t *testing.T, write func(ctx context.Context) error) *TxWrite {
	t.Helper()
	var got *TxWrite
	ctx := WithCommitHook(context.Background(), func(w TxWrite) error {
		got = &w
		return errTaken
	})
	if err := write(ctx); !errors.Is(err, errTaken) || got == nil {
		t.Fatalf("the write method did not hand its statements to the hook: %v", err)
	}
	return got
}

// TestAuditedWritesCommitWithTheirRecords: a write handed to
// AppendAuditWrites commits in the transaction of its audit record. A write
// that fails is undone with its record and leaves the others to commit; a
// record that cannot be inserted undoes its write; the chain stays whole.
func TestAuditedWritesCommitWithTheirRecords(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		clock := newTestClock()
		s := db.mustOpen(t, WithClock(clock.Now))
		ctx := context.Background()
		key := assignKey(t, s, terms(1, 1), testKey(1))
		reserve := func(idem string) string {
			t.Helper()
			res, err := s.ReserveBackup(ctx, "wallet-api", idem, "hash-"+idem, time.Minute)
			if err != nil || res.State != BackupReserved {
				t.Fatalf("ReserveBackup(%s) = %+v, %v", idem, res, err)
			}
			return res.Token
		}
		complete := func(token string, i int) *TxWrite {
			return takeWrite(t, func(ctx context.Context) error { return s.CompleteBackup(ctx, token, testBackup(i, key.KeyID)) })
		}
		backupIDs := func() []string {
			t.Helper()
			return queryStrings(t, s, `SELECT backup_id FROM backups WHERE state = 'stored' ORDER BY backup_id`)
		}

		// The hook took the write: nothing was committed by the method.
		good := complete(reserve("idem-1"), 1)
		if got := backupIDs(); len(got) != 0 {
			t.Fatalf("a write taken by the hook committed: %v", got)
		}
		lost := complete("0123456789abcdef0123456789abcdef", 2) // no reservation holds it
		also := complete(reserve("idem-3"), 3)
		c := newChain(t, "replica-a")
		call := func(i int) AuditEvent { return auditCall(clock.Now(), "wallet-api", "customer-1", i) }
		errs, err := s.AppendAuditWrites(ctx, c, []AuditEntry{
			{Event: call(0)}, {Event: call(1), Write: good}, {Event: call(2), Write: lost}, {Event: call(3), Write: also},
		}, false)
		if err != nil {
			t.Fatalf("AppendAuditWrites: %v", err)
		}
		if errs[0] != nil || errs[1] != nil || errs[3] != nil || !errors.Is(errs[2], ErrReservationLost) {
			t.Fatalf("errs = %v; want only the write without a reservation to fail, as ErrReservationLost", errs)
		}
		if got := backupIDs(); len(got) != 2 || got[0] != "backup-0001" || got[1] != "backup-0003" {
			t.Errorf("stored backups = %v; want backup-0001 and backup-0003", got)
		}
		keys := queryStrings(t, s, `SELECT key_id FROM audit_events WHERE writer_id = 'replica-a' ORDER BY seq`)
		if want := []string{call(0).KeyID, call(1).KeyID, call(3).KeyID}; len(keys) != 3 || keys[0] != want[0] || keys[1] != want[1] || keys[2] != want[2] {
			t.Errorf("records = %v; want %v (the failed write's record undone with it)", keys, want)
		}
		if seq, _ := c.Head(); seq != 3 {
			t.Errorf("chain head = %d; want 3", seq)
		}
		if rep := mustVerify(t, s); rep.Broken != nil || rep.Records != 3 {
			t.Errorf("verify = %+v, broken %v; want 3 records, whole", rep, rep.Broken)
		}

		// A record that cannot be inserted (its number is taken: a second
		// chain object for the same writer, behind) undoes its write.
		undone := complete(reserve("idem-4"), 4)
		behind := newChain(t, "replica-a")
		errs, err = s.AppendAuditWrites(ctx, behind, []AuditEntry{{Event: call(4), Write: undone}}, false)
		if err != nil || !errors.Is(errs[0], ErrAuditAppend) {
			t.Fatalf("AppendAuditWrites with a taken number = %v, %v; want the entry's ErrAuditAppend", errs, err)
		}
		if got := backupIDs(); len(got) != 2 {
			t.Errorf("stored backups = %v; the write whose record failed committed", got)
		}
		if res, err := s.ReserveBackup(ctx, "wallet-api", "idem-4", "hash-idem-4", time.Minute); err != nil || res.State != BackupInProgress {
			t.Errorf("the undone write's reservation = %+v, %v; want it still pending", res, err)
		}
		if rep := mustVerify(t, s); rep.Broken != nil || rep.Records != 3 {
			t.Errorf("verify = %+v, broken %v; want the 3 records, whole", rep, rep.Broken)
		}
	})
}
