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
