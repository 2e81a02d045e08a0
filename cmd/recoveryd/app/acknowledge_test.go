package app

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// Tests of the rule "acknowledge only what is durably recorded": an OK for a
// backup means its record is complete; a store whose record cannot be
// written fails before the upstream is touched.

// TestSlowUploadIsRecorded: a SecureFile streamed for longer than the
// registry-write limit is still recorded, because that limit starts when
// the writes start (after the upstream answered), not with the call. A
// retry with its idempotency key then finds the recorded backup.
func TestSlowUploadIsRecorded(t *testing.T) {
	const writeLimit = 100 * time.Millisecond
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	srv := startReady(t, remoteConfig(t, up, t.TempDir()), log, Options{
		Service: func(c *service.Config) { c.RegistryWriteTimeout = writeLimit },
	})
	ctx := testCtx(t)
	key := assignKey(t, ctx, srv.client, "slow-uploader")

	chunks := make([][]byte, 5)
	digest := sha256.New()
	for i := range chunks {
		chunks[i] = make([]byte, 32<<10)
		chunks[i][0] = byte(i)
		digest.Write(chunks[i])
	}
	header := fileHeader(key.GetKeyId())
	header.GetHeader().IdempotencyKey = "slow-upload-1"
	header.GetHeader().Sha256 = hex.EncodeToString(digest.Sum(nil))

	stream, err := srv.client.SecureFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(header); err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		// Paced: the whole upload takes several write limits.
		time.Sleep(writeLimit)
		if err := stream.Send(fileChunk(c)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("slow SecureFile: %v", err)
	}
	list, err := srv.client.ListBackups(ctx, &recoveryv1.ListBackupsRequest{KeyId: key.GetKeyId()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetBackups()); n != 1 || list.GetBackups()[0].GetBackupId() != resp.GetBackup().GetBackupId() {
		t.Fatalf("ListBackups = %v, want the acknowledged backup %s", list.GetBackups(), resp.GetBackup().GetBackupId())
	}
	again, err := sendFile(ctx, srv.client, header, chunks...)
	if err != nil || again.GetBackup().GetBackupId() != resp.GetBackup().GetBackupId() {
		t.Fatalf("retry with the idempotency key = %v, %v; want the recorded backup %s", again, err, resp.GetBackup().GetBackupId())
	}
	if n := len(up.Inspect.Backups(t)); n != 1 {
		t.Errorf("upstream holds %d backups, want 1", n)
	}
}

// TestUnwritableRegistryRefusesBeforeTheUpstream: while another process
// holds the SQLite registry's write lock, a SecureData without an
// idempotency key fails and the upstream stores nothing (before, it was
// stored upstream, answered OK and recorded nowhere), and health turns
// NOT_SERVING (its probe writes); once the lock is gone, both recover.
func TestUnwritableRegistryRefusesBeforeTheUpstream(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	srv := startReady(t, cfg, log, Options{ReadinessInterval: testProbeInterval})
	ctx := testCtx(t)
	key := assignKey(t, ctx, srv.client, "locked-out")

	// NOTE: a busy timeout of its own: the readiness probe writes every
	// few milliseconds, and the lock must wait for it, not fail.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(cfg.DataDir, registryFileName)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	holder, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}

	_, err = srv.client.SecureData(ctx, secureDataByKeyID(key.GetKeyId(), []byte("share while locked")))
	wantStatus(t, err, codes.Unavailable, "REGISTRY_UNAVAILABLE")
	if n := len(up.Inspect.Backups(t)); n != 0 {
		t.Fatalf("upstream holds %d backups after a store whose record could not be written", n)
	}
	waitHealth(t, srv, healthpb.HealthCheckResponse_NOT_SERVING)

	if _, err := holder.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	_ = holder.Close()
	waitHealth(t, srv, healthpb.HealthCheckResponse_SERVING)
	resp, err := srv.client.SecureData(ctx, secureDataByKeyID(key.GetKeyId(), []byte("share after the lock")))
	if err != nil {
		t.Fatalf("SecureData after the lock was released: %v", err)
	}
	if got := up.Inspect.Backups(t); len(got) != 1 || got[0].BackupID != resp.GetBackup().GetBackupId() {
		t.Errorf("upstream backups = %+v, want only %s", got, resp.GetBackup().GetBackupId())
	}
}

// waitHealth polls the overall health until it is want.
func waitHealth(t *testing.T, srv *testServer, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	ctx := testCtx(t)
	for {
		resp, err := srv.health.Check(ctx, &healthpb.HealthCheckRequest{Service: serviceName})
		if err == nil && resp.GetStatus() == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("health never turned %s (last: %v, %v)", want, resp.GetStatus(), err)
		case <-time.After(testProbeInterval):
		}
	}
}

// TestUpstreamCallTimeoutBoundsTheCall: --upstream-call-timeout reaches the
// adapter and the service: against an upstream that answers only after
// 3 s, a 300 ms bound makes the call fail instead of waiting (with the
// default 30 s it would succeed).
func TestUpstreamCallTimeoutBoundsTheCall(t *testing.T) {
	log, _ := newTestLogger(t)
	up := sandboxtest.Start(t, sandboxtest.Options{Config: sandbox.Config{
		Faults: map[string]float64{sandbox.FaultSlow: 1}, FaultDelay: 3 * time.Second, Logger: log,
	}})
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.UpstreamCallTimeout = 300 * time.Millisecond
	srv := startReady(t, cfg, log, Options{})
	_, err := srv.client.AssignKey(testCtx(t), assignKeyRequest("slow-upstream", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	if err == nil {
		t.Fatal("AssignKey succeeded against an upstream slower than --upstream-call-timeout")
	}
	if code := status.Code(err); code != codes.FailedPrecondition && code != codes.Unavailable {
		t.Errorf("AssignKey = %v, want the outcome unknown or the upstream unavailable", err)
	}
}
