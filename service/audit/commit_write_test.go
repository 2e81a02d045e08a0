package audit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/service/registry"
)

var errTaken = errors.New("taken by the test's hook")

// releaseWrite is the statements of ReleaseBackup(token), taken from the
// registry without committing them, as recoveryd's call recorder takes a
// call's write.
func releaseWrite(t *testing.T, s *registry.Store, token string) registry.TxWrite {
	t.Helper()
	var got *registry.TxWrite
	ctx := registry.WithCommitHook(context.Background(), func(w registry.TxWrite) error {
		got = &w
		return errTaken
	})
	if err := s.ReleaseBackup(ctx, token); !errors.Is(err, errTaken) || got == nil {
		t.Fatalf("ReleaseBackup did not hand its statements to the hook: %v", err)
	}
	return *got
}

// TestCommitWriteCommitsAWriteOnlyWithItsRecord: CommitWrite commits a
// write with its record; a write that fails on its own returns the
// registry's error; a write whose transaction failed is never committed,
// not even when the writer retries the records it carried; a write whose
// caller left before its turn is not run.
func TestCommitWriteCommitsAWriteOnlyWithItsRecord(t *testing.T) {
	fs := &flakyStore{Store: openStore(t)}
	w := start(t, Config{Store: fs, WriterID: "w1"})
	ctx := context.Background()
	reserve := func(idem string) registry.BackupReservation {
		t.Helper()
		res, err := fs.ReserveBackup(ctx, "wallet-api", idem, "hash-"+idem, time.Minute)
		if err != nil {
			t.Fatalf("ReserveBackup(%s): %v", idem, err)
		}
		return res
	}
	held := func(idem string) bool {
		t.Helper()
		return reserve(idem).State == registry.BackupInProgress
	}

	// A failed transaction: the caller is told, and the write never lands.
	failed := releaseWrite(t, fs.Store, reserve("idem-1").Token)
	fs.broken.Store(true)
	if err := w.CommitWrite(ctx, call(1), failed); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("CommitWrite on a failing registry = %v; want ErrUnavailable", err)
	}
	// A record waiting beside it is retried once the registry recovers.
	if err := w.Submit(call(2)); err != nil {
		t.Fatal(err)
	}
	fs.broken.Store(false)
	if err := w.SubmitAndWait(ctx, call(3)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if !held("idem-1") {
		t.Fatal("a write whose commit failed (its caller told so) was committed by a retry")
	}

	// The write's own failure is the registry's error, not the writer's.
	lost := releaseWrite(t, fs.Store, "0123456789abcdef0123456789abcdef")
	if err := w.CommitWrite(ctx, call(4), lost); !errors.Is(err, registry.ErrReservationLost) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("CommitWrite of a write that fails = %v; want ErrReservationLost", err)
	}

	// A caller gone before its turn: not run.
	departed := releaseWrite(t, fs.Store, reserve("idem-5").Token)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := w.CommitWrite(cancelled, call(5), departed); !errors.Is(err, context.Canceled) {
		t.Fatalf("CommitWrite for a departed caller = %v; want context.Canceled", err)
	}
	if !held("idem-5") {
		t.Fatal("the write of a caller gone before its turn was run")
	}

	// And a write that goes through lands with its record.
	good := releaseWrite(t, fs.Store, reserve("idem-6").Token)
	e := call(6)
	e.Method = "/recovery.v1.RecoveryService/SecureData"
	if err := w.CommitWrite(ctx, e, good); err != nil {
		t.Fatalf("CommitWrite: %v", err)
	}
	if held("idem-6") {
		t.Fatal("the committed write did not land")
	}
	events, _, err := fs.ListAuditEvents(ctx, registry.AuditFilter{}, registry.Page{Size: 100})
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]int{}
	for _, ev := range events {
		methods[ev.Method]++
	}
	// Records 2, 3 and 6: none for the writes that did not land.
	if len(events) != 3 || methods[e.Method] != 1 {
		t.Errorf("records = %v; want calls 2, 3 and the write's own", methods)
	}
	if rep, err := fs.VerifyAudit(ctx); err != nil || rep.Broken != nil {
		t.Errorf("verify: %+v, %v", rep, err)
	}
}
