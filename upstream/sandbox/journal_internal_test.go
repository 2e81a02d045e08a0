package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// commitTestBackup stores a small backup in s and returns its id.
func commitTestBackup(tb testing.TB, s *store, i int) string {
	tb.Helper()
	up, err := s.newUpload(1 << 10)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := fmt.Fprintf(up, "backup %d", i); err != nil {
		tb.Fatal(err)
	}
	b := &backupRecord{BackupID: newUUID(), BackupType: "file", KeyID: newUUID(), CustomerID: "org-1",
		PackageID: "pkg-1", SizeBytes: 8, SHA256: up.sha256Hex(), StoredAt: time.Now().UTC()}
	if err := s.commitBackup(b, up); err != nil {
		tb.Fatal(err)
	}
	return b.BackupID
}

// TestJournalReplay: commits reach the journal, not a rewritten state.json;
// reopening folds them into state.json and empties the journal; a torn last
// line (a commit a crash cut short, never acknowledged) is dropped; and a
// crash between the new snapshot and emptying the journal replays nothing
// twice.
func TestJournalReplay(t *testing.T) {
	dir := t.TempDir()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	first := commitTestBackup(t, s, 1)
	second := commitTestBackup(t, s, 2)
	if _, err := os.Stat(filepath.Join(dir, stateFileName)); !os.IsNotExist(err) {
		t.Fatalf("state.json was written by a commit (%v): commits must only append", err)
	}
	journal := filepath.Join(dir, journalFileName)
	committed, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	torn := append(append([]byte{}, committed...), []byte(`{"backup":{"backup_id":"cut sh`)...)
	if err := os.WriteFile(journal, torn, fileMode); err != nil { //nolint:gosec // G703: a path under t.TempDir()
		t.Fatal(err)
	}

	reopened, err := openStore(dir)
	if err != nil {
		t.Fatalf("reopening with a torn last line: %v", err)
	}
	if got := reopened.listBackups(); len(got) != 2 || got[0].BackupID != first || got[1].BackupID != second {
		t.Fatalf("after replay: %+v, want %s and %s", got, first, second)
	}
	if data, err := os.ReadFile(journal); err != nil || len(data) != 0 {
		t.Errorf("journal after the fold = %q, %v; want it empty", data, err)
	}

	// A crash after the snapshot, before the journal was emptied.
	if err := os.WriteFile(journal, committed, fileMode); err != nil { //nolint:gosec // G703: a path under t.TempDir()
		t.Fatal(err)
	}
	again, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.listBackups(); len(got) != 2 {
		t.Errorf("a replayed journal duplicated records: %d backups, want 2", len(got))
	}
	third := commitTestBackup(t, again, 3)
	last, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := last.listBackups(); len(got) != 3 || got[2].BackupID != third {
		t.Errorf("after a commit on the replayed store: %+v", got)
	}
}

// TestJournalCorruptLineRefused: a complete line that is not a commit is
// corruption, refused with the file named, not skipped.
func TestJournalCorruptLineRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, journalFileName), []byte("not json\n"), fileMode); err != nil {
		t.Fatal(err)
	}
	if _, err := openStore(dir); err == nil {
		t.Fatal("openStore accepted a corrupt journal")
	}
}

// BenchmarkCommitBackupAsItFills: a backup's commit costs the same in an
// empty emulator and in one that already holds 10,000 backups (it appends
// one journal line; it used to rewrite the whole state). Compare the two
// sub-benchmarks' ns/op.
func BenchmarkCommitBackupAsItFills(b *testing.B) {
	for _, held := range []int{0, 10_000} {
		b.Run(fmt.Sprintf("held=%d", held), func(b *testing.B) {
			dir := b.TempDir()
			s, err := openStore(dir)
			if err != nil {
				b.Fatal(err)
			}
			// Prefill in memory, then snapshot once: 10,000 fsynced commits
			// would make the setup, not the measurement, the slow part.
			s.dir = ""
			for i := range held {
				commitTestBackup(b, s, i)
			}
			s.dir = dir
			s.mu.Lock()
			if err := s.saveLocked(); err != nil {
				b.Fatal(err)
			}
			s.mu.Unlock()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				commitTestBackup(b, s, held+i)
			}
		})
	}
}
