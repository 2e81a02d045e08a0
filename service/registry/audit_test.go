package registry

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// auditCall is a call record for call i of caller c in organisation org.
func auditCall(at time.Time, c, org string, i int) AuditEvent {
	return AuditEvent{
		At: at, Caller: c, Method: "/recovery.v1.RecoveryService/GetKey", Organisations: []string{org},
		KeyID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Code: "OK", Peer: "127.0.0.1:5000",
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
	}
}

// appendCalls appends n call records to chain c, one transaction each.
func appendCalls(t *testing.T, s *Store, c *AuditChain, clock *testClock, caller, org string, n int) {
	t.Helper()
	for i := range n {
		clock.Advance(time.Second)
		if err := s.AppendAudit(context.Background(), c, []AuditEvent{auditCall(clock.Now(), caller, org, i)}, i%2 == 0); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
}

func newChain(t *testing.T, writer string) *AuditChain {
	t.Helper()
	c, err := NewAuditChain(writer)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustVerify(t *testing.T, s *Store) AuditReport {
	t.Helper()
	rep, err := s.VerifyAudit(context.Background())
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	return rep
}

// twoChains is a registry with two writers' chains (replicas a and b), a
// checkpoint of each naming the other, and more records after.
func twoChains(t *testing.T, db testDB) (*Store, *testClock, *AuditChain, *AuditChain) {
	t.Helper()
	clock := newTestClock()
	s := db.mustOpen(t, WithClock(clock.Now))
	a, b := newChain(t, "replica-a"), newChain(t, "replica-b")
	ctx := context.Background()
	appendCalls(t, s, a, clock, "support", "org-1", 3)
	appendCalls(t, s, b, clock, "billing", "org-2", 3)
	for _, c := range []*AuditChain{a, b} {
		if _, err := s.CheckpointAudit(ctx, c, time.Time{}); err != nil {
			t.Fatalf("CheckpointAudit: %v", err)
		}
	}
	appendCalls(t, s, a, clock, "support", "org-1", 2)
	appendCalls(t, s, b, clock, "billing", "org-2", 2)
	if rep := mustVerify(t, s); rep.Broken != nil || rep.Chains != 2 || rep.Records != 12 || rep.Checkpoints != 2 {
		t.Fatalf("untouched chains: %+v (broken %v), want 2 chains, 12 records, 2 checkpoints, none broken", rep, rep.Broken)
	}
	return s, clock, a, b
}

// TestAuditTamperingIsDetected edits, deletes and truncates records
// directly in the database, as someone with write access to it would, and
// expects the verifier to name the first broken record each time.
func TestAuditTamperingIsDetected(t *testing.T) {
	cases := []struct {
		name       string
		tamper     string // SQL run on the database
		wantWriter string
		wantSeq    int64
		wantIn     string
	}{
		{"edit a caller", `UPDATE audit_events SET caller = 'someone-else' WHERE writer_id = 'replica-a' AND seq = 2`, "replica-a", 2, "edited"},
		{"edit an outcome", `UPDATE audit_events SET code = 'PERMISSION_DENIED', reason = 'ORGANISATION_NOT_ALLOWED' WHERE writer_id = 'replica-b' AND seq = 5`, "replica-b", 5, "edited"},
		{"delete a record in the middle", `DELETE FROM audit_events WHERE writer_id = 'replica-a' AND seq = 3`, "replica-a", 4, "missing"},
		{"delete a chain's first record", `DELETE FROM audit_events WHERE writer_id = 'replica-b' AND seq = 1`, "replica-b", 2, "missing"},
		// replica-b's checkpoint (b/4) names a/4, a's checkpoint: cutting
		// a's chain from there on is seen although nothing follows the cut.
		{"truncate a chain's tail", `DELETE FROM audit_events WHERE writer_id = 'replica-a' AND seq >= 4`, "replica-a", 4, "checkpoint names this record"},
		{"delete a whole chain", `DELETE FROM audit_events WHERE writer_id = 'replica-a'`, "replica-a", 4, "checkpoint names this record"},
		{"edit and re-hash a record", `UPDATE audit_events SET hash = prev_hash WHERE writer_id = 'replica-b' AND seq = 2`, "replica-b", 2, "edited"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, db testDB) {
				s, _, _, _ := twoChains(t, db)
				if _, err := s.write.ExecContext(context.Background(), tc.tamper); err != nil {
					t.Fatalf("tamper: %v", err)
				}
				rep := mustVerify(t, s)
				if rep.Broken == nil {
					t.Fatalf("%s: verified clean after tampering: %+v", tc.name, rep)
				}
				if rep.Broken.WriterID != tc.wantWriter || rep.Broken.Seq != tc.wantSeq || !strings.Contains(rep.Broken.Problem, tc.wantIn) {
					t.Fatalf("%s: broken at %v, want %s/%d with %q", tc.name, rep.Broken, tc.wantWriter, tc.wantSeq, tc.wantIn)
				}
			})
		})
	}
}

// TestAuditReplacedChainIsDetected rewrites a record and every hash after
// it consistently: the chain alone still links, but the other replica's
// checkpoint names the original head.
func TestAuditReplacedChainIsDetected(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s, _, _, _ := twoChains(t, db)
		ctx := context.Background()
		var chain []auditRow
		err := queryEachOn(ctx, s.write, `SELECT `+auditColumns+` FROM audit_events WHERE writer_id = 'replica-a' ORDER BY seq`, nil,
			func(rows *sql.Rows) error {
				r, err := scanAuditRow(rows)
				chain = append(chain, r)
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
		prev := auditGenesisHash
		for i := range chain {
			r := &chain[i]
			if r.seq == 2 {
				r.caller = "forged"
			}
			r.prevHash = prev
			r.hash = r.digest()
			prev = r.hash
			if _, err := s.write.ExecContext(ctx, `UPDATE audit_events SET caller = $1, prev_hash = $2, hash = $3 WHERE id = $4`,
				r.caller, r.prevHash, r.hash, r.id); err != nil {
				t.Fatal(err)
			}
		}
		rep := mustVerify(t, s)
		if rep.Broken == nil || rep.Broken.WriterID != "replica-a" || rep.Broken.Seq != 4 {
			t.Fatalf("re-hashed chain: broken %v, want replica-a/4 (the record replica-b's checkpoint names)", rep.Broken)
		}
	})
}

// TestAuditPruneExportsThenLeavesAVerifiableChain prunes the older half:
// the export holds exactly the pruned records with their hashes, and the
// rest still verifies, through a second prune too.
func TestAuditPruneExportsThenLeavesAVerifiableChain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s, clock, a, b := twoChains(t, db)
		ctx := context.Background()
		// Each chain's first four records (three calls, a checkpoint) are
		// older than this; the two calls after them are not.
		cutoff := clock.Now().Add(-3 * time.Second)
		var export bytes.Buffer
		synced := false
		pruned, err := s.PruneAudit(ctx, a, cutoff, &export, func() error { synced = true; return nil })
		if err != nil {
			t.Fatalf("PruneAudit: %v", err)
		}
		if !synced || pruned.Chains != 2 || pruned.Records == 0 {
			t.Fatalf("pruned %+v, synced %v", pruned, synced)
		}
		lines := 0
		sc := bufio.NewScanner(&export)
		for sc.Scan() {
			var l auditExportLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("export line %q: %v", sc.Text(), err)
			}
			if len(l.Hash) != 64 || len(l.PrevHash) != 64 || l.WriterID == "" {
				t.Fatalf("export line lacks its chain hashes: %s", sc.Text())
			}
			lines++
		}
		if int64(lines) != pruned.Records {
			t.Fatalf("export has %d lines, %d records were pruned", lines, pruned.Records)
		}
		if rep := mustVerify(t, s); rep.Broken != nil {
			t.Fatalf("after prune: %v", rep.Broken)
		}
		// Later: more records, a checkpoint, another prune of everything
		// but the newest, by the other replica.
		appendCalls(t, s, b, clock, "billing", "org-2", 2)
		if _, err := s.CheckpointAudit(ctx, b, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PruneAudit(ctx, b, clock.Now(), &bytes.Buffer{}, func() error { return nil }); err != nil {
			t.Fatalf("second PruneAudit: %v", err)
		}
		appendCalls(t, s, a, clock, "support", "org-1", 1)
		if rep := mustVerify(t, s); rep.Broken != nil {
			t.Fatalf("after a second prune: %v", rep.Broken)
		}
		// Deleting the newest prune record (which carries every chain's
		// base) is itself detected.
		if _, err := s.write.ExecContext(ctx, `DELETE FROM audit_events WHERE kind = 'prune'`); err != nil {
			t.Fatal(err)
		}
		if rep := mustVerify(t, s); rep.Broken == nil {
			t.Fatal("deleting the prune records went unnoticed")
		}
	})
}

// TestAuditPruneKeepsEverythingWhenTheExportFails: an export that cannot
// be made durable deletes nothing.
func TestAuditPruneKeepsEverythingWhenTheExportFails(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s, clock, a, _ := twoChains(t, db)
		before := mustVerify(t, s).Records
		_, err := s.PruneAudit(context.Background(), a, clock.Now(), &bytes.Buffer{}, func() error { return errors.New("disk full") })
		if err == nil {
			t.Fatal("PruneAudit succeeded with a failing export")
		}
		if rep := mustVerify(t, s); rep.Records != before || rep.Broken != nil {
			t.Fatalf("after a failed export: %d records (had %d), broken %v", rep.Records, before, rep.Broken)
		}
	})
}

// TestListAuditEventsFiltersAndPages lists by organisation, caller and
// time range, newest first, across pages.
func TestListAuditEventsFiltersAndPages(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		s, clock, a, _ := twoChains(t, db)
		ctx := context.Background()
		// An organisation whose id is a prefix of another's, and one with
		// LIKE's wildcard: exact matches only.
		clock.Advance(time.Second)
		if err := s.AppendAudit(ctx, a, []AuditEvent{{At: clock.Now(), Caller: "support", Method: "m", Organisations: []string{"org-10", "org_1"}, Code: "OK"}}, false); err != nil {
			t.Fatal(err)
		}
		var got []AuditEvent
		token := ""
		for {
			page, next, err := s.ListAuditEvents(ctx, AuditFilter{Organisation: "org-1"}, Page{Size: 2, Token: token})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			token = next
		}
		if len(got) != 5 {
			t.Fatalf("org-1: %d records, want 5", len(got))
		}
		for i, e := range got {
			if e.Caller != "support" || e.Kind != AuditKindCall || len(e.Organisations) != 1 || e.Organisations[0] != "org-1" {
				t.Fatalf("org-1 record %d: %+v", i, e)
			}
			if i > 0 && e.At.After(got[i-1].At) {
				t.Fatalf("not newest first at %d", i)
			}
		}
		byCaller, _, err := s.ListAuditEvents(ctx, AuditFilter{Caller: "billing"}, Page{})
		if err != nil || len(byCaller) != 5 {
			t.Fatalf("billing: %d records, %v; want 5", len(byCaller), err)
		}
		from := got[3].At
		to := got[0].At
		ranged, _, err := s.ListAuditEvents(ctx, AuditFilter{Organisation: "org-1", From: from, To: to}, Page{})
		if err != nil || len(ranged) != 3 {
			t.Fatalf("time range: %d records, %v; want 3", len(ranged), err)
		}
		if _, _, err := s.ListAuditEvents(ctx, AuditFilter{}, Page{Token: "bm90LWEtdG9rZW4"}); !errors.Is(err, ErrInvalidPageToken) {
			t.Fatalf("bad token: %v", err)
		}
	})
}

// TestAuditAppendsLeaveTheWriterDurable: a record appended without waiting
// for the disk leaves SQLite's writer connection as durable as before
// (synchronous FULL), for the registry's own writes.
func TestAuditAppendsLeaveTheWriterDurable(t *testing.T) {
	s := newSQLiteDB(t).mustOpen(t)
	c := newChain(t, "w")
	if err := s.AppendAudit(context.Background(), c, []AuditEvent{auditCall(time.Now(), "support", "org-1", 1)}, false); err != nil {
		t.Fatal(err)
	}
	var mode int
	if err := s.write.QueryRowContext(context.Background(), `PRAGMA synchronous`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != 2 { // FULL
		t.Fatalf("writer connection left at synchronous=%d, want 2 (FULL)", mode)
	}
}
