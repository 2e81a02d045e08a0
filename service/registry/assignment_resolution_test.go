package registry

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestClaimUnknownAssignmentLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		clock := newTestClock()
		s := db.mustOpen(t, WithClock(clock.Now))
		ctx := context.Background()
		tm := terms(1, 1)
		parkAssignment(t, s, tm, AssignmentUnknown, "answer lost")

		claim, ok, err := s.ClaimUnknownAssignment(ctx, clock.Now(), time.Minute)
		if err != nil || !ok || claim.Token == "" || claim.Attempt != 1 || claim.Terms != tm {
			t.Fatalf("first claim = %+v, %v, %v; want attempt 1 of %+v", claim, ok, err, tm)
		}
		if again, ok, err := s.ClaimUnknownAssignment(ctx, clock.Now(), time.Minute); err != nil || ok {
			t.Fatalf("second claim = %+v, %v, %v; want nothing to claim", again, ok, err)
		}
		res, err := s.ReserveAssignment(ctx, tm, time.Minute)
		if err != nil || res.State != AssignmentResolving {
			t.Fatalf("ReserveAssignment while claimed = %v, %v; want resolving", res.State, err)
		}
		issues, _, err := s.ListAssignmentIssues(ctx, AssignmentIssueFilter{}, Page{})
		if err != nil || len(issues) != 1 || !issues[0].Resolving || issues[0].State != AssignmentUnknown || issues[0].ResolveAttempts != 1 {
			t.Fatalf("issues while claimed = %+v, %v; want the pair, unknown and resolving", issues, err)
		}

		// Nothing settled: deferred, not claimable before its time.
		retryAt := clock.Now().Add(time.Minute)
		if err := s.DeferAssignment(ctx, claim.Token, "upstream unavailable", retryAt); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := s.ClaimUnknownAssignment(ctx, clock.Now(), time.Minute); err != nil || ok {
			t.Fatalf("claim before retryAt: %v, %v; want nothing", ok, err)
		}
		res, err = s.ReserveAssignment(ctx, tm, time.Minute)
		if err != nil || res.State != AssignmentUnknown || !res.ResolveAfter.Equal(retryAt.Truncate(time.Microsecond)) || res.Reason != "upstream unavailable" {
			t.Fatalf("ReserveAssignment after defer = %+v, %v; want unknown, resolve after %v", res, err, retryAt)
		}

		clock.Advance(time.Minute)
		claim2, ok, err := s.ClaimUnknownAssignment(ctx, clock.Now(), time.Minute)
		if err != nil || !ok || claim2.Attempt != 2 || claim2.Token == claim.Token {
			t.Fatalf("claim at retryAt = %+v, %v, %v; want attempt 2 with a new token", claim2, ok, err)
		}
		if err := s.CompleteAssignment(ctx, claim.Token, testKey(1)); !errors.Is(err, ErrReservationLost) {
			t.Errorf("complete with the spent claim: %v, want ErrReservationLost", err)
		}
		if err := s.CompleteAssignment(ctx, claim2.Token, testKey(1)); err != nil {
			t.Fatalf("complete the claim: %v", err)
		}
		res, err = s.ReserveAssignment(ctx, tm, time.Minute)
		if err != nil || res.State != AssignmentRecorded || res.Key.KeyID != testKey(1).KeyID {
			t.Fatalf("ReserveAssignment after resolution = %+v, %v; want the key recorded", res, err)
		}
		if issues, _, _ := s.ListAssignmentIssues(ctx, AssignmentIssueFilter{}, Page{}); len(issues) != 0 {
			t.Errorf("issues after resolution = %+v, want none", issues)
		}
	})
}

// TestClaimTakesOverDeadHolders: a caller's reservation, or a claim, whose
// holder died is claimable once its lease has run out, not before; the
// dead holder's token is spent.
func TestClaimTakesOverDeadHolders(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		clock := newTestClock()
		s := db.mustOpen(t, WithClock(clock.Now))
		ctx := context.Background()
		res, err := s.ReserveAssignment(ctx, terms(1, 1), time.Minute)
		if err != nil || res.State != AssignmentReserved {
			t.Fatal(res.State, err)
		}
		if _, ok, err := s.ClaimUnknownAssignment(ctx, clock.Now(), time.Minute); err != nil || ok {
			t.Fatalf("claim of a live reservation: %v, %v", ok, err)
		}
		clock.Advance(time.Minute + time.Second)
		claim, ok, err := s.ClaimUnknownAssignment(ctx, clock.Now(), time.Minute)
		if err != nil || !ok || claim.Attempt != 1 {
			t.Fatalf("claim of an expired reservation = %+v, %v, %v", claim, ok, err)
		}
		if err := s.CompleteAssignment(ctx, res.Token, testKey(1)); !errors.Is(err, ErrReservationLost) {
			t.Errorf("the dead holder's complete: %v, want ErrReservationLost", err)
		}
		// The claimer dies too.
		clock.Advance(time.Minute + time.Second)
		again, ok, err := s.ClaimUnknownAssignment(ctx, clock.Now(), time.Minute)
		if err != nil || !ok || again.Attempt != 2 {
			t.Fatalf("claim after the claimer died = %+v, %v, %v", again, ok, err)
		}
		if err := s.FailAssignment(ctx, claim.Token, AssignmentOrphaned, "late"); !errors.Is(err, ErrReservationLost) {
			t.Errorf("the dead claimer's fail: %v, want ErrReservationLost", err)
		}
	})
}

func TestClaimAssignmentOfOnePair(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		clock := newTestClock()
		s := db.mustOpen(t, WithClock(clock.Now))
		ctx := context.Background()
		assignKey(t, s, terms(1, 1), testKey(1))
		parkAssignment(t, s, terms(1, 2), AssignmentOrphaned, "orphaned")
		parkAssignment(t, s, terms(1, 3), AssignmentUnknown, "lost")

		for _, tc := range []struct {
			user string
			want AssignmentState
		}{{"user-001", AssignmentRecorded}, {"user-002", AssignmentOrphaned}} {
			claim, state, err := s.ClaimAssignment(ctx, tc.user, "customer-1", time.Minute)
			if err != nil || state != tc.want || claim.Token != "" {
				t.Errorf("ClaimAssignment(%s) = %+v, %v, %v; want %v and no claim", tc.user, claim, state, err, tc.want)
			}
		}
		if _, _, err := s.ClaimAssignment(ctx, "user-404", "customer-1", time.Minute); !errors.Is(err, ErrNotFound) {
			t.Errorf("ClaimAssignment of no pair: %v, want ErrNotFound", err)
		}

		// An operator's claim ignores the backoff.
		first, _, _ := s.ClaimUnknownAssignment(ctx, clock.Now(), time.Minute)
		if err := s.DeferAssignment(ctx, first.Token, "still lost", clock.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		claim, state, err := s.ClaimAssignment(ctx, "user-003", "customer-1", time.Minute)
		if err != nil || state != AssignmentReserved || claim.Attempt != 2 || claim.Terms != terms(1, 3) {
			t.Fatalf("ClaimAssignment(unknown) = %+v, %v, %v; want attempt 2", claim, state, err)
		}
		if _, state, err := s.ClaimAssignment(ctx, "user-003", "customer-1", time.Minute); err != nil || state != AssignmentResolving {
			t.Errorf("ClaimAssignment while claimed = %v, %v; want resolving", state, err)
		}
	})
}

// TestConcurrentClaimersNeverShareAPair: claimers on two Stores of one
// database (two replicas) take every unknown pair exactly once between them.
func TestConcurrentClaimersNeverShareAPair(t *testing.T) {
	const pairs, claimersPerStore = 30, 4
	forEachBackend(t, func(t *testing.T, db testDB) {
		stores := []*Store{db.mustOpen(t), db.mustOpen(t)}
		ctx := context.Background()
		for i := range pairs {
			parkAssignment(t, stores[0], terms(1, i), AssignmentUnknown, "lost")
		}
		var mu sync.Mutex
		claimed := map[string]int{}
		var wg sync.WaitGroup
		for _, s := range stores {
			for range claimersPerStore {
				wg.Go(func() {
					for {
						claim, ok, err := s.ClaimUnknownAssignment(ctx, time.Now(), time.Hour)
						if err != nil {
							t.Error(err)
							return
						}
						if !ok {
							return
						}
						mu.Lock()
						claimed[claim.Terms.UserIdentifier]++
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		if len(claimed) != pairs {
			t.Errorf("%d pairs claimed, want %d", len(claimed), pairs)
		}
		for user, n := range claimed {
			if n != 1 {
				t.Errorf("%s claimed %d times", user, n)
			}
		}
	})
}
