package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// queueBehindBlockedWrite holds SQLite's writer with a write that waits for
// release, then starts writes and returns once all of them are queued
// behind it: released, they all go into the next commit together.
func queueBehindBlockedWrite(t *testing.T, s *Store, writes []func() error) (release func(), errs []error, wait func()) {
	t.Helper()
	ch, started := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	blocked := make(chan error, 1)
	wg.Go(func() {
		blocked <- s.inTx(context.Background(), func(*sql.Tx) error { close(started); <-ch; return nil })
	})
	<-started // the writer is busy with it, the queue empty
	deadline := time.Now().Add(time.Minute)
	errs = make([]error, len(writes))
	for i, w := range writes {
		wg.Go(func() { errs[i] = w() })
	}
	for len(s.batch.reqs) != len(writes) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d writes queued", len(s.batch.reqs), len(writes))
		}
		time.Sleep(time.Millisecond)
	}
	return func() { close(ch) }, errs, func() {
		wg.Wait()
		if err := <-blocked; err != nil {
			t.Errorf("the blocking write: %v", err)
		}
	}
}

// TestGroupCommit: writes waiting for SQLite's writer are committed
// together, one commit for all of them, each answered only after it; a
// failing write is rolled back alone; everything acknowledged is there after
// the store is reopened.
func TestGroupCommit(t *testing.T) {
	db := newSQLiteDB(t)
	s, err := db.open(WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := assignKey(t, s, terms(1, 1), testKey(1))
	const n = 40
	var writes []func() error
	for i := range n {
		b := testBackup(i, key.KeyID)
		if i == n/2 {
			b.KeyID = "no-such-key" // fails: ErrNotFound, rolled back alone
		}
		writes = append(writes, func() error { return s.RecordBackup(ctx, b) })
	}
	before := s.batch.commits.Load()
	release, errs, wait := queueBehindBlockedWrite(t, s, writes)
	release()
	wait()
	if got := s.batch.commits.Load() - before; got != 2 {
		t.Errorf("%d commits for the blocking write and %d queued ones; want 2", got, n)
	}
	for i, err := range errs {
		switch {
		case i == n/2 && !errors.Is(err, ErrNotFound):
			t.Errorf("write %d (unknown key) = %v; want ErrNotFound", i, err)
		case i != n/2 && err != nil:
			t.Errorf("write %d = %v", i, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = db.mustOpen(t)
	got, _, err := s.ListBackups(ctx, BackupFilter{}, Page{Size: 100})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, b := range got {
		ids[b.BackupID] = true
	}
	for i := range n {
		id := testBackup(i, "").BackupID
		if want := i != n/2; ids[id] != want {
			t.Errorf("after reopening, backup %s recorded = %t; want %t", id, ids[id], want)
		}
	}
	if len(ids) != n-1 {
		t.Errorf("%d backups recorded; want %d", len(ids), n-1)
	}
}

// TestGroupCommitSkipsDepartedCallers: a write whose caller has gone before
// its turn is not run, and the others in its commit are kept.
func TestGroupCommitSkipsDepartedCallers(t *testing.T) {
	s := newSQLiteDB(t).mustOpen(t)
	key := assignKey(t, s, terms(1, 1), testKey(1))
	gone, cancel := context.WithCancel(context.Background())
	writes := []func() error{
		func() error { return s.RecordBackup(context.Background(), testBackup(1, key.KeyID)) },
		func() error { return s.RecordBackup(gone, testBackup(2, key.KeyID)) },
		func() error { return s.RecordBackup(context.Background(), testBackup(3, key.KeyID)) },
	}
	release, errs, wait := queueBehindBlockedWrite(t, s, writes)
	cancel()
	release()
	wait()
	if errs[0] != nil || !errors.Is(errs[1], context.Canceled) || errs[2] != nil {
		t.Fatalf("errors = %v; want nil, context.Canceled, nil", errs)
	}
	got, _, err := s.ListBackups(context.Background(), BackupFilter{}, Page{Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d backups recorded; want 2: %s", len(got), fmt.Sprint(got))
	}
}
