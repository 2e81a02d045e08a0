package registry

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHotPathStatementsArePreparedWhereTheDialectReusesThem(t *testing.T) {
	tests := []struct {
		name         string
		newDB        func(testing.TB) testDB
		opts         []Option
		wantPrepared bool
	}{
		{"sqlite", newSQLiteDB, nil, true},
		{"sqlite, text statements", newSQLiteDB, []Option{withTextStatements()}, false},
		{"sqlite, substitute migrations", newSQLiteDB, []Option{withMigrations(fstest.MapFS{})}, false},
		{"postgresql", newPostgresDB, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := tt.newDB(t).mustOpen(t, tt.opts...)
			for _, st := range s.stmts.all() {
				if got := st.prepared != nil; got != tt.wantPrepared {
					t.Errorf("statement prepared = %v, want %v:%s", got, tt.wantPrepared, st.text)
				}
			}
		})
	}
}

// hotPathOutcome is what the hot-path operations returned, compared between
// a Store that prepares its statements and one that sends their text.
type hotPathOutcome struct {
	Repeat          AssignmentReservation
	ByID, ByPublic  *Key
	BackupRepeat    BackupReservation
	BackupConflict  BackupState
	Backups         []Backup
	ConcurrentFound int
}

// runHotPath exercises every prepared statement, including after statement
// failures (a constraint violation must leave the statement reusable) and
// from concurrent readers (each reader connection gets its own prepared
// copy).
func runHotPath(t *testing.T, s *Store) hotPathOutcome {
	t.Helper()
	ctx := context.Background()
	var out hotPathOutcome
	key := assignKey(t, s, terms(1, 1), testKey(1))

	var err error
	out.Repeat, err = s.ReserveAssignment(ctx, terms(1, 1), time.Minute)
	if err != nil {
		t.Fatalf("repeat ReserveAssignment: %v", err)
	}
	if out.ByID, err = s.GetKey(ctx, key.KeyID); err != nil {
		t.Fatalf("GetKey: %v", err)
	}
	if out.ByPublic, err = s.GetKeyByPublicKey(ctx, testKey(1).PublicKeyHex); err != nil {
		t.Fatalf("GetKeyByPublicKey: %v", err)
	}
	if _, err := s.GetKey(ctx, "key-none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetKey(unrecorded) = %v, want ErrNotFound", err)
	}

	res, err := s.ReserveBackup(ctx, "wallet-api", "idem-1", "hash-1", time.Minute)
	if err != nil || res.State != BackupReserved {
		t.Fatalf("ReserveBackup = %+v, %v; want reserved", res, err)
	}
	if err := s.CompleteBackup(ctx, res.Token, testBackup(1, key.KeyID)); err != nil {
		t.Fatalf("CompleteBackup: %v", err)
	}
	if out.BackupRepeat, err = s.ReserveBackup(ctx, "wallet-api", "idem-1", "hash-1", time.Minute); err != nil {
		t.Fatalf("repeat ReserveBackup: %v", err)
	}
	conflict, err := s.ReserveBackup(ctx, "wallet-api", "idem-1", "hash-2", time.Minute)
	if err != nil {
		t.Fatalf("ReserveBackup with another hash: %v", err)
	}
	out.BackupConflict = conflict.State

	// Each refusal is followed by a success through the same statements.
	for i := range 2 {
		dup := testBackup(1, key.KeyID)
		if err := s.RecordBackup(ctx, dup); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("RecordBackup(duplicate id) = %v, want ErrDuplicate", err)
		}
		if err := s.RecordBackup(ctx, testBackup(10+i, "key-none")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("RecordBackup(unrecorded key) = %v, want ErrNotFound", err)
		}
		if err := s.RecordBackup(ctx, testBackup(2+i, key.KeyID)); err != nil {
			t.Fatalf("RecordBackup after refusals: %v", err)
		}
	}
	if out.Backups, _, err = s.ListBackups(ctx, BackupFilter{KeyID: key.KeyID}, Page{}); err != nil {
		t.Fatalf("ListBackups: %v", err)
	}

	const readers = 8
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		found int
	)
	for range readers {
		wg.Go(func() {
			for range 5 {
				k, err := s.GetKeyByPublicKey(ctx, testKey(1).PublicKeyHex)
				if err != nil || k.KeyID != key.KeyID {
					t.Errorf("concurrent GetKeyByPublicKey = %+v, %v", k, err)
					return
				}
				mu.Lock()
				found++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	out.ConcurrentFound = found
	return out
}

func TestPreparedAndTextStatementsAgree(t *testing.T) {
	outcomes := map[string]hotPathOutcome{}
	for _, mode := range []struct {
		name string
		opts []Option
	}{
		{"prepared", nil},
		{"text", []Option{withTextStatements()}},
	} {
		clock := newTestClock()
		s := newSQLiteDB(t).mustOpen(t, append([]Option{WithClock(clock.Now)}, mode.opts...)...)
		outcomes[mode.name] = runHotPath(t, s)
	}
	prepared := outcomes["prepared"]
	if prepared.Repeat.State != AssignmentRecorded || prepared.BackupRepeat.State != BackupRecorded ||
		prepared.BackupConflict != BackupConflict || len(prepared.Backups) != 3 || prepared.ConcurrentFound != 40 {
		t.Errorf("prepared statements: %+v; want a recorded repeat, a recorded backup repeat, a conflict, 3 backups and 40 lookups", prepared)
	}
	if diff := cmp.Diff(outcomes["text"], prepared); diff != "" {
		t.Errorf("prepared statements differ from text statements (-text +prepared):\n%s", diff)
	}
}

func TestCloseClosesPreparedStatements(t *testing.T) {
	db := newSQLiteDB(t)
	s, err := db.open(WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	key := assignKey(t, s, terms(1, 1), testKey(1))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := context.Background()
	for _, st := range s.stmts.all() {
		if err := st.prepared.QueryRowContext(ctx).Err(); err == nil {
			t.Errorf("statement still runs after Close:%s", st.text)
		}
	}
	if _, err := s.GetKey(ctx, key.KeyID); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("GetKey after Close = %v, want a failure", err)
	}
	if _, err := s.ReserveAssignment(ctx, terms(1, 1), time.Minute); err == nil {
		t.Error("ReserveAssignment after Close succeeded")
	}
}
