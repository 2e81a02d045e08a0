package app

import (
	"bytes"
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// TestSecureFileCallerCancelsMidStream: a caller that goes away while its
// file is being forwarded leaves nothing stored, upstream or in the
// registry, and the server carries on serving.
func TestSecureFileCallerCancelsMidStream(t *testing.T) {
	log, _ := newTestLogger(t)
	observer := sandboxtest.NewWatch(sandbox.PathSecureFile, 64<<10)
	up := startUpstream(t, t.TempDir(), log, observer.Wrap)
	srv := startReady(t, remoteConfig(t, up, t.TempDir()), log, Options{})
	ctx := testCtx(t)
	key := assignKey(t, ctx, srv.client, "user-1")

	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := srv.client.SecureFile(callCtx)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{0xa5}, 96<<10)
	for _, m := range []*recoveryv1.SecureFileRequest{fileHeader(key.GetKeyId()), fileChunk(chunk)} {
		if err := stream.Send(m); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	// The upstream is receiving the file body: now the caller goes away.
	await(t, observer.Read(), "the upstream to receive file bytes")
	cancel()
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.Canceled {
		t.Errorf("CloseAndRecv after cancel = %v, want Canceled", err)
	}
	observer.NextEnd(t)

	if backups := up.Inspect.Backups(t); len(backups) != 0 {
		t.Errorf("upstream stored %+v from a cancelled upload", backups)
	}
	listed, err := srv.client.ListBackups(ctx, &recoveryv1.ListBackupsRequest{})
	if err != nil || len(listed.GetBackups()) != 0 {
		t.Errorf("ListBackups = %v, %v; want no backup", listed, err)
	}
	// The next upload on the same server completes.
	resp, err := sendFile(ctx, srv.client, fileHeader(key.GetKeyId()), chunk)
	if err != nil {
		t.Fatalf("SecureFile after the cancelled one: %v", err)
	}
	if got := up.Inspect.Content(t, resp.GetBackup().GetBackupId()); !bytes.Equal(got, chunk) {
		t.Errorf("upstream stored %d bytes, want the %d sent", len(got), len(chunk))
	}
}
