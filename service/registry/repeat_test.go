package registry

import (
	"context"
	"testing"
	"time"
)

// TestRepeatAssignmentTakesNoWrite: a pair whose key is recorded is
// answered while SQLite's one writer is busy, and commits nothing.
func TestRepeatAssignmentTakesNoWrite(t *testing.T) {
	s := newSQLiteDB(t).mustOpen(t)
	tm := terms(1, 1)
	key := assignKey(t, s, tm, testKey(1))
	release, _, wait := queueBehindBlockedWrite(t, s, nil)
	defer wait()
	defer release()
	before := s.batch.commits.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.ReserveAssignment(ctx, tm, time.Minute)
	if err != nil || res.State != AssignmentRecorded || res.Key == nil || res.Key.KeyID != key.KeyID {
		t.Fatalf("ReserveAssignment of a recorded pair = %+v, %v; want the recorded key %s", res, err, key.KeyID)
	}
	if res.Terms != tm {
		t.Errorf("terms = %+v; want %+v", res.Terms, tm)
	}
	if got := s.batch.commits.Load(); got != before {
		t.Errorf("%d commits for a repeat; want none", got-before)
	}
}
