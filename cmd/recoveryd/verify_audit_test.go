package main

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/service/registry"
)

// TestVerifyAudit runs `recoveryd --verify-audit` on a SQLite registry
// whose audit trail is intact (exit 0), then after one record was edited in
// the file (exit 4, naming the record).
func TestVerifyAudit(t *testing.T) {
	dataDir := t.TempDir()
	path := filepath.Join(dataDir, "registry.db")
	ctx := context.Background()
	store, err := registry.OpenSQLite(ctx, path, registry.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := registry.NewAuditChain("replica-1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := store.AppendAudit(ctx, chain, []registry.AuditEvent{{At: time.Now(), Caller: "support", Method: "/recovery.v1.RecoveryService/GetKey", Code: "OK", Peer: string(rune('a' + i))}}, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runMain(t, nil, "--verify-audit", "--data-dir", dataDir)
	if code != 0 || !strings.HasPrefix(stdout, "audit trail OK: 3 records in 1 chains") {
		t.Fatalf("intact trail: exit %d, stdout %q\nstderr:\n%s", code, stdout, stderr)
	}

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE audit_events SET caller = 'someone-else' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	code, stdout, stderr = runMain(t, nil, "--verify-audit", "--data-dir", dataDir)
	if code != exitAuditBroken || !strings.Contains(stdout, "audit trail BROKEN: chain replica-1, record 2:") {
		t.Fatalf("edited trail: exit %d (want %d), stdout %q\nstderr:\n%s", code, exitAuditBroken, stdout, stderr)
	}
}
