package registry

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// parkAssignment reserves tm and parks it in state with reason.
func parkAssignment(t *testing.T, s *Store, tm KeyTerms, state AssignmentState, reason string) {
	t.Helper()
	res, err := s.ReserveAssignment(context.Background(), tm, time.Minute)
	if err != nil || res.State != AssignmentReserved {
		t.Fatalf("ReserveAssignment(%s) = %v, %v; want reserved", tm.UserIdentifier, res.State, err)
	}
	if err := s.FailAssignment(context.Background(), res.Token, state, reason); err != nil {
		t.Fatalf("FailAssignment(%s, %s): %v", tm.UserIdentifier, state, err)
	}
}

// issueUsers lists the user identifiers of issues, in order.
func issueUsers(issues []AssignmentIssue) []string {
	out := make([]string, len(issues))
	for i, is := range issues {
		out[i] = is.Terms.UserIdentifier
	}
	return out
}

func TestListAssignmentIssues(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		clock := newTestClock()
		s := db.mustOpen(t, WithClock(clock.Now))
		ctx := context.Background()

		// One pair per state, a second apart, so the order is known: users
		// 1..6 of customer 1, user 7 of customer 2.
		assignKey(t, s, terms(1, 1), testKey(1)) // settled: never listed
		clock.Advance(time.Second)
		parkAssignment(t, s, terms(1, 2), AssignmentUnknown, "answer lost")
		clock.Advance(time.Second)
		parkAssignment(t, s, terms(1, 3), AssignmentOrphaned, "409 after our attempt")
		clock.Advance(time.Second)
		parkAssignment(t, s, terms(1, 4), AssignmentUntrusted, "bad signature")
		clock.Advance(time.Second)
		parkAssignment(t, s, terms(1, 5), AssignmentElsewhere, "409 with no attempt")
		clock.Advance(time.Second)
		// A reservation whose holder died: listed as unknown once its lease
		// has run out, not before.
		if res, err := s.ReserveAssignment(ctx, terms(1, 6), time.Minute); err != nil || res.State != AssignmentReserved {
			t.Fatalf("ReserveAssignment = %v, %v", res.State, err)
		}
		clock.Advance(time.Second)
		parkAssignment(t, s, terms(2, 7), AssignmentUnknown, "answer lost")

		all, next, err := s.ListAssignmentIssues(ctx, AssignmentIssueFilter{Lease: time.Minute}, Page{})
		if err != nil || next != "" {
			t.Fatalf("ListAssignmentIssues = %v, next %q; want one page", err, next)
		}
		if got, want := issueUsers(all), []string{"user-007", "user-005", "user-004", "user-003", "user-002"}; !slices.Equal(got, want) {
			t.Errorf("issues = %v, want %v (newest first; settled and live reservations left out)", got, want)
		}
		wantStates := []AssignmentState{AssignmentUnknown, AssignmentElsewhere, AssignmentUntrusted, AssignmentOrphaned, AssignmentUnknown}
		for i, is := range all {
			if is.State != wantStates[i] {
				t.Errorf("%s state = %s, want %s", is.Terms.UserIdentifier, is.State, wantStates[i])
			}
		}
		if all[1].Reason != "409 with no attempt" || all[1].Terms != terms(1, 5) {
			t.Errorf("elsewhere issue = %+v, want its terms and reason", all[1])
		}

		clock.Advance(2 * time.Minute)
		all, _, err = s.ListAssignmentIssues(ctx, AssignmentIssueFilter{Lease: time.Minute}, Page{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := issueUsers(all), []string{"user-007", "user-006", "user-005", "user-004", "user-003", "user-002"}; !slices.Equal(got, want) {
			t.Errorf("issues after the lease = %v, want %v (the expired reservation listed)", got, want)
		}
		if all[1].State != AssignmentUnknown || all[1].Reason == "" {
			t.Errorf("expired reservation = %+v, want unknown with a reason", all[1])
		}

		for _, tc := range []struct {
			filter AssignmentIssueFilter
			want   []string
		}{
			{AssignmentIssueFilter{State: AssignmentUnknown}, []string{"user-007", "user-002"}},
			{AssignmentIssueFilter{State: AssignmentUnknown, Lease: time.Minute}, []string{"user-007", "user-006", "user-002"}},
			{AssignmentIssueFilter{State: AssignmentOrphaned}, []string{"user-003"}},
			{AssignmentIssueFilter{State: AssignmentUntrusted}, []string{"user-004"}},
			{AssignmentIssueFilter{State: AssignmentElsewhere}, []string{"user-005"}},
			{AssignmentIssueFilter{CustomerID: "customer-2"}, []string{"user-007"}},
			{AssignmentIssueFilter{CustomerID: "customer-9"}, nil},
		} {
			got, _, err := s.ListAssignmentIssues(ctx, tc.filter, Page{})
			if err != nil || !slices.Equal(issueUsers(got), tc.want) {
				t.Errorf("ListAssignmentIssues(%+v) = %v, %v; want %v", tc.filter, issueUsers(got), err, tc.want)
			}
		}

		// Pages of two cover the listing exactly once, in order.
		var paged []string
		token := ""
		for range 10 {
			page, next, err := s.ListAssignmentIssues(ctx, AssignmentIssueFilter{Lease: time.Minute}, Page{Size: 2, Token: token})
			if err != nil {
				t.Fatal(err)
			}
			paged = append(paged, issueUsers(page)...)
			if token = next; token == "" {
				break
			}
		}
		if want := []string{"user-007", "user-006", "user-005", "user-004", "user-003", "user-002"}; !slices.Equal(paged, want) {
			t.Errorf("paged issues = %v, want %v", paged, want)
		}

		for _, bad := range []string{"nonsense", encodeCursor(keysCursor, cursor{at: clock.Now(), id: "1"}),
			encodeCursor(assignmentIssuesCursor, cursor{at: clock.Now(), id: "not-a-number"})} {
			if _, _, err := s.ListAssignmentIssues(ctx, AssignmentIssueFilter{}, Page{Token: bad}); !errors.Is(err, ErrInvalidPageToken) {
				t.Errorf("token %q: %v, want ErrInvalidPageToken", bad, err)
			}
		}
		if _, _, err := s.ListAssignmentIssues(ctx, AssignmentIssueFilter{State: AssignmentRecorded}, Page{}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("state recorded: %v, want ErrInvalidArgument", err)
		}
	})
}
