package registry

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkAssignment measures one full assignment as the service makes it:
// reserve, complete, then a repeat that finds the recorded key.
func BenchmarkAssignment(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db := be.newDB(b)
			s, err := db.open(WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				tm := terms(1, i)
				res, err := s.ReserveAssignment(ctx, tm, time.Minute)
				if err != nil || res.State != AssignmentReserved {
					b.Fatalf("reserve: %+v, %v", res, err)
				}
				k := testKey(i)
				if err := s.CompleteAssignment(ctx, res.Token, k); err != nil {
					b.Fatal(err)
				}
				if res, err := s.ReserveAssignment(ctx, tm, time.Minute); err != nil || res.State != AssignmentRecorded {
					b.Fatalf("repeat: %+v, %v", res, err)
				}
			}
		})
	}
}

// BenchmarkReserveAssignmentRecorded is ReserveAssignment for a pair whose
// key is recorded (a repeat AssignKey's registry work) on SQLite, with the
// hot-path statements prepared once (impl=ours) against the same Store
// sending their text each time (impl=baseline), so the pair shows what
// preparing saves. PostgreSQL is left out: it prepares nothing itself (pgx
// caches statements per connection), so both halves would be the same path.
func BenchmarkReserveAssignmentRecorded(b *testing.B) {
	preparedAndText(b, func(b *testing.B, s *Store) {
		ctx := context.Background()
		tm := terms(1, 1)
		res, err := s.ReserveAssignment(ctx, tm, time.Minute)
		if err != nil || res.State != AssignmentReserved {
			b.Fatalf("reserve: %+v, %v", res, err)
		}
		if err := s.CompleteAssignment(ctx, res.Token, testKey(1)); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if res, err := s.ReserveAssignment(ctx, tm, time.Minute); err != nil || res.State != AssignmentRecorded {
				b.Fatalf("repeat: %+v, %v", res, err)
			}
		}
	})
}

// BenchmarkAppendAudit appends a batch of 16 audit records per commit, not
// durable, as the audit writer commits the records of calls nobody waits
// on (repeat AssignKeys, reads) gathered during its linger, on SQLite: with
// the INSERT prepared once (impl=ours) against the same Store sending its
// text each time (impl=baseline). One op is one batch.
func BenchmarkAppendAudit(b *testing.B) {
	preparedAndText(b, func(b *testing.B, s *Store) {
		c, err := NewAuditChain("bench-writer")
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		at := time.Now()
		batch := make([]AuditEvent, 16)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			for j := range batch {
				i++
				batch[j] = auditCall(at, "bench-caller", "bench-co", i)
			}
			if err := s.AppendAudit(ctx, c, batch, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// preparedAndText runs bench on SQLite twice, as impl=baseline with every
// statement's text sent each time and as impl=ours with the hot-path
// statements prepared once, each on a fresh Store.
func preparedAndText(b *testing.B, bench func(b *testing.B, s *Store)) {
	for _, impl := range []struct {
		name string
		opts []Option
	}{
		{"baseline", []Option{withTextStatements()}},
		{"ours", nil},
	} {
		b.Run("impl="+impl.name, func(b *testing.B) {
			s, err := newSQLiteDB(b).open(append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, impl.opts...)...)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			bench(b, s)
		})
	}
}
