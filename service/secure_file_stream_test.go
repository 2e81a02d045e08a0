package service_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// Metric families of the adapter's retries, read by the spool tests.
const (
	upstreamRetriesTotal    = "recovery_upstream_retries_total"
	upstreamDuplicatesTotal = "recovery_upstream_possible_duplicates_total"
	secureFileEndpoint      = "POST " + secureFilePath
)

// spoolDir is the fixture's SecureFile spool.
func (f *fixture) spoolDir() string { return filepath.Join(f.dataDir, "spool") }

// spoolFiles lists what the spool holds.
func (f *fixture) spoolFiles(t *testing.T) []os.DirEntry {
	t.Helper()
	entries, err := os.ReadDir(f.spoolDir())
	if err != nil {
		t.Fatalf("reading the spool: %v", err)
	}
	return entries
}

// wantNothingStored checks that neither the upstream nor the registry holds
// a backup and that the spool is empty.
func (f *fixture) wantNothingStored(t *testing.T) {
	t.Helper()
	if n := len(f.inspect.Backups(t)); n != 0 {
		t.Errorf("upstream stored %d backups", n)
	}
	if n := len(f.registryBackups()); n != 0 {
		t.Errorf("registry recorded %d backups", n)
	}
	if files := f.spoolFiles(t); len(files) != 0 {
		t.Errorf("spool holds %d files after the call ended", len(files))
	}
}

// TestSecureFileIdleStreamIsAborted: a stream that pauses longer than
// --stream-idle-timeout, wherever it pauses, is aborted with ABORTED
// STREAM_IDLE_TIMEOUT and stores nothing; a header followed by nothing
// never opens an upstream request.
func TestSecureFileIdleStreamIsAborted(t *testing.T) {
	file := pattern(2*service.MinChunkBytes, 11)
	tests := []struct {
		name string
		msgs func(key *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest
		// uploads: the upstream upload has started before the pause.
		uploads bool
	}{
		{"after the header", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			return []*recoveryv1.SecureFileRequest{headerMsg(byID(k))}
		}, false},
		{"between two chunks", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			return []*recoveryv1.SecureFileRequest{headerMsg(byID(k)), chunkMsg(file[:service.MinChunkBytes])}
		}, true},
		{"after the last chunk, before the close", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			return append([]*recoveryv1.SecureFileRequest{headerMsg(byID(k))}, chunksOf(file, service.MinChunkBytes)...)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := sandboxtest.NewWatch(secureFilePath, 0)
			f := newFixture(t, fixtureOptions{streamIdleTimeout: 300 * time.Millisecond, wrap: w.Wrap})
			key := f.mustAssign("user-1", "org-1")
			// NOTE: bounded, so a server that never times out fails the
			// test (DEADLINE_EXCEEDED) instead of hanging it.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			stream, err := f.client.SecureFile(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tt.msgs(key) {
				if err := stream.Send(m); err != nil {
					t.Fatalf("Send: %v", err)
				}
			}
			// Wait for the server's answer without closing the stream:
			// the stream stays open and idle.
			err = stream.RecvMsg(new(recoveryv1.SecureFileResponse))
			d := wantStatus(t, err, codes.Aborted, service.ReasonStreamIdleTimeout)
			if got := d.info.GetMetadata()["idle_timeout"]; got != "300ms" {
				t.Errorf("ErrorInfo metadata idle_timeout = %q, want 300ms", got)
			}
			f.waitFinished("SecureFile", 1)
			if tt.uploads {
				if code := w.NextEnd(t); code == http.StatusOK {
					t.Fatal("the upstream answered 200 to the aborted upload")
				}
			} else if n := len(w.Arrived()); n != 0 {
				t.Fatalf("a header alone opened %d upstream requests", n)
			}
			f.wantNothingStored(t)
		})
	}
}

// TestSecureFileSpoolWhileUploading: while an upload is under way its bytes
// are in one 0600 file of a 0700 spool directory under --data-dir, and the
// file is gone once the call has ended.
func TestSecureFileSpoolWhileUploading(t *testing.T) {
	chunk := pattern(service.MinChunkBytes, 12)
	w := sandboxtest.NewWatch(secureFilePath, int64(len(chunk)))
	f := newFixture(t, fixtureOptions{wrap: w.Wrap})
	key := f.mustAssign("user-1", "org-1")

	stream, err := f.client.SecureFile(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*recoveryv1.SecureFileRequest{headerMsg(byID(key)), chunkMsg(chunk)} {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-w.Read(): // spooled before forwarded: the spool has the chunk
	case <-time.After(20 * time.Second):
		t.Fatal("the upstream never received the first chunk")
	}
	dir, err := os.Stat(f.spoolDir())
	if err != nil {
		t.Fatal(err)
	}
	if mode := dir.Mode().Perm(); mode != 0o700 {
		t.Errorf("spool directory mode %v, want 0700", mode)
	}
	files := f.spoolFiles(t)
	if len(files) != 1 {
		t.Fatalf("spool holds %d files during one upload, want 1", len(files))
	}
	info, err := files[0].Info()
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("spool file mode %v, want 0600", mode)
	}
	if info.Size() != int64(len(chunk)) {
		t.Errorf("spool file holds %d bytes, want the %d sent", info.Size(), len(chunk))
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("SecureFile: %v", err)
	}
	if !bytes.Equal(f.inspect.Content(t, resp.GetBackup().GetBackupId()), chunk) {
		t.Error("the upstream stored other bytes than sent")
	}
	if files := f.spoolFiles(t); len(files) != 0 {
		t.Errorf("spool holds %d files after the call ended", len(files))
	}
}

// faultSeedFirstOnly is a fault seed whose first draw (0.24) is under 0.5
// and whose second (0.97) is not: with a fault of probability 0.5 on
// secure/file only, the first upload attempt fails and the retry does not.
const faultSeedFirstOnly = 1

// TestSecureFileRetriedFromTheSpool: when the upstream fails the first
// attempt of a complete upload (a 503, an answer lost after the file was
// stored, a cut-off answer), recoveryd re-sends the file from its spool
// without the caller sending it again: the call ends OK, the recorded
// backup exists upstream with the bytes sent, and the spool is empty.
func TestSecureFileRetriedFromTheSpool(t *testing.T) {
	file := pattern(3*service.MinChunkBytes+100, 13)
	tests := []struct {
		kind string
		// stored: the failed attempt stored the file (its answer was
		// lost), so the retry leaves a counted extra copy.
		stored bool
	}{
		{sandbox.Fault503, false},
		{sandbox.FaultResetAfter, true},
		{sandbox.FaultTruncated, true},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{
				faults:     map[string]float64{tt.kind: 0.5},
				faultPaths: []string{sandbox.PathSecureFile},
				faultSeed:  faultSeedFirstOnly,
			})
			key := f.mustAssign("user-1", "org-1")
			before := f.metrics(t)
			h := byID(key)
			h.IdempotencyKey = "spooled-" + tt.kind
			h.Sha256 = sha256Hex(file)
			resp, err := f.sendFile(t.Context(), append([]*recoveryv1.SecureFileRequest{headerMsg(h)}, chunksOf(file, service.MinChunkBytes)...))
			if err != nil {
				t.Fatalf("SecureFile: %v", err)
			}
			after := f.metrics(t)
			if n := f.inspect.Faults(t).Injected[tt.kind]; n != 1 {
				t.Fatalf("the sandbox injected %d %s faults, want 1: the test did not exercise a retry", n, tt.kind)
			}
			id := resp.GetBackup().GetBackupId()
			if !bytes.Equal(f.inspect.Content(t, id), file) {
				t.Error("the recorded backup does not hold the bytes sent")
			}
			recorded := f.registryBackups()
			if len(recorded) != 1 || recorded[0].BackupID != id {
				t.Errorf("registry holds %v, want only backup %s", recorded, id)
			}
			wantUpstream := 1
			if tt.stored {
				wantUpstream = 2 // the lost answer's copy and the retry's
			}
			if n := len(f.inspect.Backups(t)); n != wantUpstream {
				t.Errorf("upstream holds %d backups, want %d", n, wantUpstream)
			}
			endpoint := map[string]string{"endpoint": secureFileEndpoint}
			if d := after.counter(upstreamRetriesTotal, endpoint) - before.counter(upstreamRetriesTotal, endpoint); d != 1 {
				t.Errorf("%s grew by %v, want 1", upstreamRetriesTotal, d)
			}
			// NOTE: only where the failed attempt certainly had the whole
			// file: a 503 may come while the body is still being sent.
			if d := after.counter(upstreamDuplicatesTotal, endpoint) - before.counter(upstreamDuplicatesTotal, endpoint); tt.stored && d != 1 {
				t.Errorf("%s grew by %v, want 1", upstreamDuplicatesTotal, d)
			}
			if files := f.spoolFiles(t); len(files) != 0 {
				t.Errorf("spool holds %d files after the call ended", len(files))
			}
			// The caller's own retry gets the recorded backup.
			again, err := f.sendFile(t.Context(), append([]*recoveryv1.SecureFileRequest{headerMsg(h)}, chunksOf(file, service.MinChunkBytes)...))
			if err != nil || again.GetBackup().GetBackupId() != id {
				t.Errorf("retry with the idempotency key = %v, %v; want backup %s", again, err, id)
			}
		})
	}
}

// TestSecureFileEveryAttemptFails: when every attempt fails, the answer
// says what the upstream may have done: BACKUP_OUTCOME_UNKNOWN after
// attempts that stored the file (their answers lost), UPSTREAM_RATE_LIMITED
// after refusals that stored nothing; either way the registry holds no
// backup and the spool is empty.
func TestSecureFileEveryAttemptFails(t *testing.T) {
	file := pattern(2*service.MinChunkBytes+7, 14)
	tests := []struct {
		kind   string
		code   codes.Code
		reason recoveryv1.ErrorReason
		stored int // copies the upstream holds
	}{
		{sandbox.FaultResetAfter, codes.FailedPrecondition, service.ReasonBackupOutcomeUnknown, 3},
		{sandbox.Fault429, codes.Unavailable, service.ReasonUpstreamRateLimited, 0},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{
				faults:     map[string]float64{tt.kind: 1},
				faultPaths: []string{sandbox.PathSecureFile},
			})
			key := f.mustAssign("user-1", "org-1")
			_, err := f.sendFile(t.Context(), append([]*recoveryv1.SecureFileRequest{headerMsg(byID(key))}, chunksOf(file, service.MinChunkBytes)...))
			wantStatus(t, err, tt.code, tt.reason)
			if n := f.inspect.Faults(t).Injected[tt.kind]; n != 3 {
				t.Errorf("the sandbox injected %d faults, want 3 (the attempt and 2 retries from the spool)", n)
			}
			if n := len(f.inspect.Backups(t)); n != tt.stored {
				t.Errorf("upstream holds %d backups, want %d", n, tt.stored)
			}
			if n := len(f.registryBackups()); n != 0 {
				t.Errorf("registry recorded %d backups", n)
			}
			if files := f.spoolFiles(t); len(files) != 0 {
				t.Errorf("spool holds %d files after the call ended", len(files))
			}
		})
	}
}

// TestSecureFileUnwritableSpool: a spool that cannot be written fails the
// call before anything is acknowledged or sent: INTERNAL, no upstream
// request, nothing recorded.
func TestSecureFileUnwritableSpool(t *testing.T) {
	w := sandboxtest.NewWatch(secureFilePath, 0)
	f := newFixture(t, fixtureOptions{wrap: w.Wrap})
	key := f.mustAssign("user-1", "org-1")
	// NOTE: root may write anywhere, so the spool is made unwritable by
	// putting a file where its directory was.
	if err := os.Remove(f.spoolDir()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.spoolDir(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	file := pattern(2*service.MinChunkBytes, 15)
	_, err := f.sendFile(t.Context(), append([]*recoveryv1.SecureFileRequest{headerMsg(byID(key))}, chunksOf(file, service.MinChunkBytes)...))
	wantStatus(t, err, codes.Internal, service.ReasonInternal)
	if n := len(w.Arrived()); n != 0 {
		t.Errorf("%d upstream requests were opened without a spool", n)
	}
	if n := len(f.inspect.Backups(t)); n != 0 {
		t.Errorf("upstream stored %d backups", n)
	}
	if n := len(f.registryBackups()); n != 0 {
		t.Errorf("registry recorded %d backups", n)
	}
	f.logs.WaitFor(t, "writing the upload spool")
}

// TestOpenSpoolRemovesLeftovers: spool files a previous process left behind
// are removed at start, anything else is left alone, and the directory is
// restricted to its owner.
func TestOpenSpoolRemovesLeftovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.MkdirAll(dir, 0o750); err != nil { // wider than the spool wants
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, "upload-123.spool")
	other := filepath.Join(dir, "notes.txt")
	for _, p := range []string{leftover, other} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := service.OpenSpool(dir); err != nil {
		t.Fatalf("OpenSpool: %v", err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover spool file still there (%v)", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file that is not a spool file was removed: %v", err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o700 {
		t.Errorf("spool directory mode %v, want 0700", mode)
	}
}
