package registry

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAssignmentLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		clock := newTestClock()
		s := db.mustOpen(t, WithClock(clock.Now))
		ctx := context.Background()
		tm := terms(1, 1)

		res, err := s.ReserveAssignment(ctx, tm, time.Minute)
		if err != nil || res.State != AssignmentReserved || res.Token == "" {
			t.Fatalf("first ReserveAssignment = %+v, %v; want reserved with a token", res, err)
		}
		token := res.Token

		again, err := s.ReserveAssignment(ctx, tm, time.Minute)
		if err != nil || again.State != AssignmentInProgress || again.Token != "" {
			t.Fatalf("second ReserveAssignment = %+v, %v; want in progress without a token", again, err)
		}
		if again.Terms != tm {
			t.Errorf("in-progress terms = %+v, want %+v", again.Terms, tm)
		}

		clock.Advance(10 * time.Second)
		k := testKey(1)
		if err := s.CompleteAssignment(ctx, token, k); err != nil {
			t.Fatalf("CompleteAssignment: %v", err)
		}
		want := Key{
			KeyTerms:     tm,
			KeyID:        k.KeyID,
			PublicKeyHex: strings.ToLower(k.PublicKeyHex),
			Fingerprint:  k.Fingerprint,
			AssignedAt:   clock.Now().Truncate(time.Microsecond),
			Receipt:      k.Receipt,
		}

		// A repeat, even with different terms, returns what was recorded;
		// comparing terms is the caller's business.
		repeat := tm
		repeat.KeyEnvironment = "COLD"
		rec, err := s.ReserveAssignment(ctx, repeat, time.Minute)
		if err != nil || rec.State != AssignmentRecorded || rec.Key == nil {
			t.Fatalf("ReserveAssignment after completion = %+v, %v; want recorded", rec, err)
		}
		if *rec.Key != want {
			t.Errorf("recorded key = %+v\nwant %+v", *rec.Key, want)
		}
		if rec.Terms != tm || rec.Token != "" {
			t.Errorf("recorded reservation terms %+v token %q, want %+v and no token", rec.Terms, rec.Token, tm)
		}

		// The token is spent: every use of it now fails.
		for name, use := range map[string]func() error{
			"complete": func() error { return s.CompleteAssignment(ctx, token, testKey(2)) },
			"release":  func() error { return s.ReleaseAssignment(ctx, token) },
			"fail":     func() error { return s.FailAssignment(ctx, token, AssignmentUnknown, "late") },
		} {
			if err := use(); !errors.Is(err, ErrReservationLost) {
				t.Errorf("%s with a spent token: %v, want ErrReservationLost", name, err)
			}
		}
		got, err := s.GetKey(ctx, k.KeyID)
		if err != nil || *got != want {
			t.Errorf("GetKey after spent-token calls = %+v, %v; want %+v", got, err, want)
		}
	})
}

func TestConcurrentReservationsMakeOneWinner(t *testing.T) {
	const callers = 50
	for _, stores := range []int{1, 2} {
		t.Run(map[int]string{1: "one store", 2: "two replicas"}[stores], func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, db testDB) {
				replicas := make([]*Store, stores)
				for i := range replicas {
					replicas[i] = db.mustOpen(t)
				}
				ctx := context.Background()
				tm := terms(7, 7)

				results := make([]AssignmentReservation, callers)
				errs := make([]error, callers)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						results[i], errs[i] = replicas[i%stores].ReserveAssignment(ctx, tm, time.Hour)
					}()
				}
				close(start)
				wg.Wait()

				var winner string
				counts := map[AssignmentState]int{}
				for i := range callers {
					if errs[i] != nil {
						t.Fatalf("caller %d: %v", i, errs[i])
					}
					counts[results[i].State]++
					if results[i].State == AssignmentReserved {
						winner = results[i].Token
					}
				}
				if counts[AssignmentReserved] != 1 || counts[AssignmentInProgress] != callers-1 {
					t.Fatalf("states = %v; want exactly 1 reserved and %d in progress", counts, callers-1)
				}

				if err := replicas[0].CompleteAssignment(ctx, winner, testKey(7)); err != nil {
					t.Fatalf("CompleteAssignment: %v", err)
				}
				for i, r := range replicas {
					res, err := r.ReserveAssignment(ctx, tm, time.Hour)
					if err != nil || res.State != AssignmentRecorded || res.Key.KeyID != testKey(7).KeyID {
						t.Errorf("replica %d after completion: %+v, %v; want the recorded key", i, res, err)
					}
				}
			})
		})
	}
}

func TestReleaseLetsALaterReservationWin(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s := db.mustOpen(t)
		ctx := context.Background()
		tm := terms(1, 2)

		first, err := s.ReserveAssignment(ctx, tm, time.Minute)
		if err != nil || first.State != AssignmentReserved {
			t.Fatalf("ReserveAssignment = %+v, %v", first, err)
		}
		if err := s.ReleaseAssignment(ctx, first.Token); err != nil {
			t.Fatalf("ReleaseAssignment: %v", err)
		}
		second, err := s.ReserveAssignment(ctx, tm, time.Minute)
		if err != nil || second.State != AssignmentReserved || second.Token == first.Token {
			t.Fatalf("ReserveAssignment after release = %+v, %v; want reserved with a new token", second, err)
		}
		if err := s.CompleteAssignment(ctx, first.Token, testKey(2)); !errors.Is(err, ErrReservationLost) {
			t.Errorf("CompleteAssignment with the released token: %v, want ErrReservationLost", err)
		}
		if err := s.CompleteAssignment(ctx, second.Token, testKey(2)); err != nil {
			t.Errorf("CompleteAssignment with the new token: %v", err)
		}
	})
}

func TestFailAssignmentParksThePair(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s := db.mustOpen(t)
		ctx := context.Background()
		for i, state := range []AssignmentState{AssignmentUnknown, AssignmentUntrusted, AssignmentElsewhere, AssignmentOrphaned} {
			t.Run(state.String(), func(t *testing.T) {
				tm := terms(2, i)
				res, err := s.ReserveAssignment(ctx, tm, time.Minute)
				if err != nil || res.State != AssignmentReserved {
					t.Fatalf("ReserveAssignment = %+v, %v", res, err)
				}
				reason := "operator note for " + state.String()
				if err := s.FailAssignment(ctx, res.Token, state, reason); err != nil {
					t.Fatalf("FailAssignment: %v", err)
				}
				got, err := s.ReserveAssignment(ctx, tm, time.Minute)
				if err != nil || got.State != state || got.Reason != reason || got.Terms != tm || got.Key != nil {
					t.Errorf("ReserveAssignment after failing = %+v, %v; want %v with reason %q", got, err, state, reason)
				}
				if err := s.CompleteAssignment(ctx, res.Token, testKey(100+i)); !errors.Is(err, ErrReservationLost) {
					t.Errorf("CompleteAssignment after failing: %v, want ErrReservationLost", err)
				}
				if _, err := s.GetKey(ctx, testKey(100+i).KeyID); !errors.Is(err, ErrNotFound) {
					t.Errorf("GetKey after failing: %v, want ErrNotFound", err)
				}
			})
		}

		// A reason is kept for operators even when it is long or odd.
		odd, err := s.ReserveAssignment(ctx, terms(2, 8), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		long := "upstream said \x00\xff " + strings.Repeat("r", 3*maxReasonLen)
		if err := s.FailAssignment(ctx, odd.Token, AssignmentUnknown, long); err != nil {
			t.Fatalf("FailAssignment with a long, odd reason: %v", err)
		}
		if got, err := s.ReserveAssignment(ctx, terms(2, 8), time.Minute); err != nil || got.Reason != operatorReason(long) {
			t.Errorf("stored reason = %.40q (%d bytes), %v; want the sanitised reason", got.Reason, len(got.Reason), err)
		}

		// States a reservation cannot fail into are refused and leave it held.
		tm := terms(2, 9)
		res, err := s.ReserveAssignment(ctx, tm, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, state := range []AssignmentState{0, AssignmentReserved, AssignmentRecorded, AssignmentInProgress, 42} {
			if err := s.FailAssignment(ctx, res.Token, state, "x"); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("FailAssignment(%v): %v, want ErrInvalidArgument", state, err)
			}
		}
		if got, err := s.ReserveAssignment(ctx, tm, time.Minute); err != nil || got.State != AssignmentInProgress {
			t.Errorf("after refused failures: %+v, %v; want still in progress", got, err)
		}
	})
}

func TestLeaseExpiryMakesTheOutcomeUnknown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		clock := newTestClock()
		s := db.mustOpen(t, WithClock(clock.Now))
		ctx := context.Background()
		tm := terms(3, 1)
		const lease = time.Minute

		res, err := s.ReserveAssignment(ctx, tm, lease)
		if err != nil || res.State != AssignmentReserved {
			t.Fatalf("ReserveAssignment = %+v, %v", res, err)
		}
		clock.Advance(lease - time.Microsecond)
		if got, err := s.ReserveAssignment(ctx, tm, lease); err != nil || got.State != AssignmentInProgress {
			t.Fatalf("just inside the lease: %+v, %v; want in progress", got, err)
		}
		clock.Advance(time.Microsecond)
		got, err := s.ReserveAssignment(ctx, tm, lease)
		if err != nil || got.State != AssignmentUnknown || !strings.Contains(got.Reason, "lease") || got.Terms != tm {
			t.Fatalf("at the lease's end: %+v, %v; want unknown with a lease reason", got, err)
		}
		// Unknown is recorded, not recomputed: a long lease does not revive it.
		if again, err := s.ReserveAssignment(ctx, tm, 24*time.Hour); err != nil || again.State != AssignmentUnknown || again.Reason != got.Reason {
			t.Errorf("later: %+v, %v; want the same unknown state", again, err)
		}
		for name, use := range map[string]func() error{
			"complete": func() error { return s.CompleteAssignment(ctx, res.Token, testKey(3)) },
			"release":  func() error { return s.ReleaseAssignment(ctx, res.Token) },
			"fail":     func() error { return s.FailAssignment(ctx, res.Token, AssignmentElsewhere, "x") },
		} {
			if err := use(); !errors.Is(err, ErrReservationLost) {
				t.Errorf("%s after expiry: %v, want ErrReservationLost", name, err)
			}
		}
	})
}

func TestGetKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s := db.mustOpen(t)
		ctx := context.Background()
		want := assignKey(t, s, terms(4, 1), testKey(41))
		pending, err := s.ReserveAssignment(ctx, terms(4, 2), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		_ = pending

		lower := strings.ToLower(testKey(41).PublicKeyHex)
		mixed := strings.ToUpper(lower[:10]) + lower[10:]
		tests := []struct {
			name    string
			get     func() (*Key, error)
			wantErr error
		}{
			{"by id", func() (*Key, error) { return s.GetKey(ctx, want.KeyID) }, nil},
			{"by lowercase public key", func() (*Key, error) { return s.GetKeyByPublicKey(ctx, lower) }, nil},
			{"by uppercase public key", func() (*Key, error) { return s.GetKeyByPublicKey(ctx, strings.ToUpper(lower)) }, nil},
			{"by mixed-case public key", func() (*Key, error) { return s.GetKeyByPublicKey(ctx, mixed) }, nil},
			{"unknown id", func() (*Key, error) { return s.GetKey(ctx, "key-none") }, ErrNotFound},
			{"unknown public key", func() (*Key, error) { return s.GetKeyByPublicKey(ctx, "abcd") }, ErrNotFound},
			{"empty id", func() (*Key, error) { return s.GetKey(ctx, "") }, ErrInvalidArgument},
			{"non-hex public key", func() (*Key, error) { return s.GetKeyByPublicKey(ctx, "xyz0") }, ErrInvalidArgument},
			{"empty public key", func() (*Key, error) { return s.GetKeyByPublicKey(ctx, "") }, ErrInvalidArgument},
		}
		for _, tt := range tests {
			got, err := tt.get()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != nil {
					t.Errorf("%s: %+v, %v; want %v", tt.name, got, err, tt.wantErr)
				}
				continue
			}
			if err != nil || *got != want {
				t.Errorf("%s: %+v, %v; want %+v", tt.name, got, err, want)
			}
		}
	})
}

func TestKeyIDAndPublicKeyAreUnique(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s := db.mustOpen(t)
		ctx := context.Background()
		first := testKey(50)
		assignKey(t, s, terms(5, 1), first)

		sameID := testKey(51)
		sameID.KeyID = first.KeyID
		samePublic := testKey(52)
		samePublic.PublicKeyHex = strings.ToLower(first.PublicKeyHex) // the other case of the same key

		for name, k := range map[string]Key{"same key id": sameID, "same public key": samePublic} {
			t.Run(name, func(t *testing.T) {
				tm := terms(5, len(name))
				res, err := s.ReserveAssignment(ctx, tm, time.Minute)
				if err != nil || res.State != AssignmentReserved {
					t.Fatalf("ReserveAssignment = %+v, %v", res, err)
				}
				if err := s.CompleteAssignment(ctx, res.Token, k); !errors.Is(err, ErrDuplicate) {
					t.Fatalf("CompleteAssignment with %s: %v, want ErrDuplicate", name, err)
				}
				// Nothing changed: the reservation is still held and usable.
				if got, err := s.ReserveAssignment(ctx, tm, time.Minute); err != nil || got.State != AssignmentInProgress {
					t.Errorf("after the duplicate: %+v, %v; want in progress", got, err)
				}
				if err := s.ReleaseAssignment(ctx, res.Token); err != nil {
					t.Errorf("ReleaseAssignment after the duplicate: %v", err)
				}
			})
		}
	})
}

func TestAssignmentInputIsValidated(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s := db.mustOpen(t)
		ctx := context.Background()
		held, err := s.ReserveAssignment(ctx, terms(6, 1), time.Minute)
		if err != nil {
			t.Fatal(err)
		}

		mod := func(f func(*KeyTerms)) KeyTerms { tm := terms(6, 2); f(&tm); return tm }
		reserves := []struct {
			name  string
			terms KeyTerms
			lease time.Duration
		}{
			{"empty user", mod(func(tm *KeyTerms) { tm.UserIdentifier = "" }), time.Minute},
			{"empty customer", mod(func(tm *KeyTerms) { tm.CustomerID = "" }), time.Minute},
			{"unspecified environment", mod(func(tm *KeyTerms) { tm.KeyEnvironment = "" }), time.Minute},
			{"lowercase environment", mod(func(tm *KeyTerms) { tm.KeyEnvironment = "hot" }), time.Minute},
			{"NUL in user", mod(func(tm *KeyTerms) { tm.UserIdentifier = "a\x00b" }), time.Minute},
			{"invalid UTF-8 name", mod(func(tm *KeyTerms) { tm.CustomerName = "\xff" }), time.Minute},
			{"oversized package", mod(func(tm *KeyTerms) { tm.PackageName = strings.Repeat("p", maxTextLen+1) }), time.Minute},
			{"zero lease", terms(6, 2), 0},
			{"negative lease", terms(6, 2), -time.Second},
		}
		for _, tt := range reserves {
			if res, err := s.ReserveAssignment(ctx, tt.terms, tt.lease); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("ReserveAssignment(%s) = %+v, %v; want ErrInvalidArgument", tt.name, res, err)
			}
		}
		// None of them reserved the valid pair they were variants of.
		if res, err := s.ReserveAssignment(ctx, terms(6, 2), time.Minute); err != nil || res.State != AssignmentReserved {
			t.Errorf("valid reserve after the refused ones: %+v, %v; want reserved", res, err)
		}

		modKey := func(f func(*Key)) Key { k := testKey(60); f(&k); return k }
		completes := []struct {
			name  string
			token string
			key   Key
		}{
			{"empty token", "", testKey(60)},
			{"empty key id", held.Token, modKey(func(k *Key) { k.KeyID = "" })},
			{"empty public key", held.Token, modKey(func(k *Key) { k.PublicKeyHex = "" })},
			{"non-hex public key", held.Token, modKey(func(k *Key) { k.PublicKeyHex = "zz" + k.PublicKeyHex[2:] })},
			{"odd-length public key", held.Token, modKey(func(k *Key) { k.PublicKeyHex = k.PublicKeyHex[1:] })},
			{"oversized public key", held.Token, modKey(func(k *Key) { k.PublicKeyHex = strings.Repeat("ab", maxPublicKeyHexLen) })},
			{"short fingerprint", held.Token, modKey(func(k *Key) { k.Fingerprint = k.Fingerprint[:62] })},
			{"non-hex fingerprint", held.Token, modKey(func(k *Key) { k.Fingerprint = "g" + k.Fingerprint[1:] })},
		}
		for _, tt := range completes {
			if err := s.CompleteAssignment(ctx, tt.token, tt.key); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("CompleteAssignment(%s): %v, want ErrInvalidArgument", tt.name, err)
			}
		}
		if err := s.ReleaseAssignment(ctx, ""); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ReleaseAssignment(empty): %v, want ErrInvalidArgument", err)
		}
		// The held reservation survived every refused call.
		if res, err := s.ReserveAssignment(ctx, terms(6, 1), time.Minute); err != nil || res.State != AssignmentInProgress {
			t.Errorf("held pair after refused calls: %+v, %v; want in progress", res, err)
		}
		if err := s.CompleteAssignment(ctx, held.Token, testKey(60)); err != nil {
			t.Errorf("valid CompleteAssignment after refused ones: %v", err)
		}
	})
}
