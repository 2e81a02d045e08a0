package soak

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// These tests run in `make test` (no processes): each breaks one
// invariant in an otherwise clean end state and wants the soak's checks to
// name it, so a soak that reports 0 violations has checked something.

// cleanEndState is a phase that kept every invariant: a pair recorded
// with the upstream's key, one orphaned; a store acknowledged during the
// load, one acknowledged on the retry after it, one left unknown; an
// extra copy upstream; another customer's key beside ours.
func cleanEndState() (*result, endState) {
	res := &result{
		calls: []*call{
			{kind: rpcAssign, user: "u1", id: "k1"},
			{kind: rpcAssign, user: "u2", err: errors.New("orphaned")},
			{kind: rpcData, idempotencyKey: "d1", id: "b1"},
			{kind: rpcData, idempotencyKey: "d2", err: errors.New("unavailable"), retryID: "b2"},
			{kind: rpcFile, idempotencyKey: "f1", err: errors.New("unknown")},
		},
		pairs: map[string]string{"u1": "recorded", "u2": "orphaned"},
	}
	st := endState{
		customerID: "c",
		keys: []sandbox.InspectedKey{
			{KeyID: "k1", CustomerID: "c", UserIdentifier: "u1"},
			{KeyID: "k2", CustomerID: "c", UserIdentifier: "u2"},
			{KeyID: "k9", CustomerID: "other", UserIdentifier: "u1"},
		},
		backups:  []sandbox.InspectedBackup{{BackupID: "b1"}, {BackupID: "b2"}, {BackupID: "b3"}},
		recorded: []string{"b1", "b2"},
		faults:   sandbox.FaultCounts{Injected: map[string]int64{sandbox.FaultTruncated: 1}},
	}
	return res, st
}

func TestCheckEndState(t *testing.T) {
	res, st := cleanEndState()
	checkEndState(res, st)
	if len(res.violations) != 0 {
		t.Fatalf("a clean end state: %q", res.violations)
	}

	breaks := map[string]struct {
		breakIt func(*result, *endState)
		want    string
	}{
		"an acknowledged backup the upstream lacks": {func(_ *result, st *endState) {
			st.backups = st.backups[1:]
		}, "d1: acknowledged as b1, yet upstream=false"},
		"an acknowledged backup the registry lacks": {func(_ *result, st *endState) {
			st.recorded = []string{"b2"}
		}, "d1: acknowledged as b1, yet upstream=true recorded=false"},
		"a backup acknowledged on the retry, not recorded": {func(_ *result, st *endState) {
			st.recorded = []string{"b1"}
		}, "d2: acknowledged as b2"},
		"a registry backup the upstream lacks": {func(_ *result, st *endState) {
			st.recorded = append(st.recorded, "b4")
		}, "records backup b4, which the upstream lacks"},
		"two upstream keys for one customer": {func(_ *result, st *endState) {
			st.keys = append(st.keys, sandbox.InspectedKey{KeyID: "k3", CustomerID: "c", UserIdentifier: "u2"})
		}, "c/u2 has two upstream keys"},
		"a recorded key that is not the upstream's": {func(res *result, _ *endState) {
			res.calls[0].id = "k-other"
		}, "recorded key k-other is not the upstream's key \"k1\""},
		"more orphans than lost answers": {func(_ *result, st *endState) {
			st.faults.Injected = map[string]int64{}
		}, "1 orphaned pairs, more than the 0 faults"},
	}
	for name, b := range breaks {
		t.Run(name, func(t *testing.T) {
			res, st := cleanEndState()
			b.breakIt(res, &st)
			checkEndState(res, st)
			if !containsViolation(res, b.want) {
				t.Errorf("violations %q; want one containing %q", res.violations, b.want)
			}
		})
	}
}

func TestPairState(t *testing.T) {
	orphaned := statusWithReason(t, "ASSIGNMENT_ORPHANED")
	unknown := statusWithReason(t, "ASSIGNMENT_OUTCOME_UNKNOWN")
	tests := map[string]struct {
		during, after *call
		state, want   string // want: a violation containing it, "" for none
	}{
		"recorded, same key":         {&call{id: "k1"}, &call{id: "k1"}, "recorded", ""},
		"failed, then recorded":      {&call{err: unknown}, &call{id: "k2"}, "recorded", ""},
		"failed, then orphaned":      {&call{err: unknown}, &call{err: orphaned}, "orphaned", ""},
		"failed, then unknown":       {&call{err: unknown}, &call{err: unknown}, "unknown", ""},
		"acknowledged, another key":  {&call{id: "k1"}, &call{id: "k2"}, "recorded", "acknowledged key k1 during the load, k2 after it"},
		"acknowledged, orphaned":     {&call{id: "k1"}, &call{err: orphaned}, "orphaned", "acknowledged during the load, orphaned after it"},
		"acknowledged, unknown":      {&call{id: "k1"}, &call{err: unknown}, "unknown", "acknowledged during the load, unknown after it"},
		"no final answer after load": {&call{err: unknown}, &call{err: errors.New("boom")}, "Unknown", "want recorded, orphaned or unknown"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			res := &result{}
			tt.during.kind, tt.during.user = rpcAssign, "u"
			if got := pairState(tt.during, tt.after, res); got != tt.state {
				t.Errorf("state %q, want %q", got, tt.state)
			}
			switch {
			case tt.want == "" && len(res.violations) != 0:
				t.Errorf("violations %q, want none", res.violations)
			case tt.want != "" && !containsViolation(res, tt.want):
				t.Errorf("violations %q; want one containing %q", res.violations, tt.want)
			}
		})
	}
}

func TestCheckFaultCounts(t *testing.T) {
	clean := func() *result {
		return &result{
			final: metrics{upstreamRequests: map[string]float64{"200": 10, "500": 2, "503": 1, "429": 1, "error": 3}},
			finalInjected: sandbox.FaultCounts{Requests: 17, Injected: map[string]int64{
				sandbox.Fault500: 2, sandbox.Fault503: 1, sandbox.Fault429: 1, sandbox.FaultResetBefore: 1, sandbox.FaultResetAfter: 1}},
		}
	}
	res := clean()
	checkFaultCounts(res)
	if len(res.violations) != 0 {
		t.Fatalf("matching counts: %q", res.violations)
	}
	breaks := map[string]struct {
		breakIt func(*result)
		want    string
	}{
		"a 503 recoveryd did not count": {func(r *result) { r.final.upstreamRequests["503"] = 0; r.final.upstreamRequests["200"]++ },
			"injected 1 503 answers, recoveryd counted 0"},
		"cut connections counted as answers": {func(r *result) { r.final.upstreamRequests["error"] = 1; r.final.upstreamRequests["200"] += 2 },
			"cut 2 connections, recoveryd counted 1"},
		"requests the emulator never saw": {func(r *result) { r.final.upstreamRequests["200"]++ },
			"counted 17 partner requests, recoveryd 18"},
	}
	for name, b := range breaks {
		t.Run(name, func(t *testing.T) {
			res := clean()
			b.breakIt(res)
			checkFaultCounts(res)
			if !containsViolation(res, b.want) {
				t.Errorf("violations %q; want one containing %q", res.violations, b.want)
			}
		})
	}
}

func containsViolation(res *result, part string) bool {
	for _, v := range res.violations {
		if strings.Contains(v, part) {
			return true
		}
	}
	return false
}

// statusWithReason is a FAILED_PRECONDITION error with reason, as
// recoveryd sends it.
func statusWithReason(t *testing.T, reason string) error {
	t.Helper()
	st, err := status.New(codes.FailedPrecondition, reason).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "recovery.v1"})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}
