package service_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

const secureFilePath = "/v1/partner/secure/file"

func headerMsg(h *recoveryv1.SecureFileHeader) *recoveryv1.SecureFileRequest {
	return &recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Header{Header: h}}
}

func chunkMsg(b []byte) *recoveryv1.SecureFileRequest {
	return &recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Chunk{Chunk: b}}
}

// chunksOf splits file into messages of at most size bytes.
func chunksOf(file []byte, size int) []*recoveryv1.SecureFileRequest {
	var msgs []*recoveryv1.SecureFileRequest
	for len(file) > 0 {
		n := min(size, len(file))
		msgs = append(msgs, chunkMsg(file[:n]))
		file = file[n:]
	}
	return msgs
}

// pattern is n deterministic, non-repeating-looking bytes.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31%256) ^ byte(i>>8%256) ^ seed
	}
	return b
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sendFile streams msgs and returns the outcome. If the server answers
// early, the rest is not sent and the server's status is returned.
func (f *fixture) sendFile(ctx context.Context, msgs []*recoveryv1.SecureFileRequest) (*recoveryv1.SecureFileResponse, error) {
	stream, err := f.client.SecureFile(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				break // the server has answered: CloseAndRecv returns it
			}
			return nil, err
		}
	}
	return stream.CloseAndRecv()
}

func TestSecureFileStoresTheBytesSent(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	key := f.mustAssign("user-1", "org-1")
	big := pattern(300<<10, 1)
	small := pattern(100, 2)
	size := func(n int) *int64 { v := int64(n); return &v }
	tests := []struct {
		name   string
		header *recoveryv1.SecureFileHeader
		file   []byte
		chunk  int
	}{
		{"by key_id with declared size and digest", &recoveryv1.SecureFileHeader{
			Key:       &recoveryv1.SecureFileHeader_KeyId{KeyId: key.GetKeyId()},
			SizeBytes: size(len(big)), Sha256: sha256Hex(big),
			Metadata: &recoveryv1.BackupMetadata{Description: "wallet backup", ContentType: "application/octet-stream",
				OriginalFilename: "wallet.dat.enc"},
		}, big, 64 << 10},
		{"by public key without declarations", &recoveryv1.SecureFileHeader{
			Key: &recoveryv1.SecureFileHeader_PublicKeyHex{PublicKeyHex: key.GetPublicKeyHex()},
		}, small, 1 << 20},
		{"minimum chunks and a small last one", &recoveryv1.SecureFileHeader{
			Key: &recoveryv1.SecureFileHeader_KeyId{KeyId: key.GetKeyId()}, Sha256: sha256Hex(big[:2*service.MinChunkBytes+40]),
		}, big[:2*service.MinChunkBytes+40], service.MinChunkBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := append([]*recoveryv1.SecureFileRequest{headerMsg(tt.header)}, chunksOf(tt.file, tt.chunk)...)
			resp, err := f.sendFile(t.Context(), msgs)
			if err != nil {
				t.Fatalf("SecureFile: %v", err)
			}
			got := resp.GetBackup()
			want := &recoveryv1.Backup{
				BackupType:     recoveryv1.BackupType_BACKUP_TYPE_FILE,
				KeyId:          key.GetKeyId(),
				ChecksumSha256: sha256Hex(tt.file),
				SizeBytes:      int64(len(tt.file)),
				Metadata:       tt.header.GetMetadata(),
				CustomerId:     "org-1",
				PackageId:      "pkg-1",
			}
			if diff := cmp.Diff(want, got, protocmp.Transform(),
				protocmp.IgnoreFields(&recoveryv1.Backup{}, "backup_id", "stored_at")); diff != "" {
				t.Errorf("backup (-want +got):\n%s", diff)
			}
			if content := f.inspect.Content(t, got.GetBackupId()); !bytes.Equal(content, tt.file) {
				t.Errorf("upstream stored %d bytes that differ from the %d sent", len(content), len(tt.file))
			}
			for _, b := range f.inspect.Backups(t) {
				if b.BackupID == got.GetBackupId() && (b.SHA256 != want.GetChecksumSha256() || b.KeyID != key.GetKeyId()) {
					t.Errorf("sandbox filed the file as %+v", b)
				}
			}
			list, err := f.client.ListBackups(t.Context(), &recoveryv1.ListBackupsRequest{KeyId: key.GetKeyId()})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, b := range list.GetBackups() {
				if proto.Equal(b, got) {
					found = true
				}
			}
			if !found {
				t.Error("the registry did not record the backup as returned")
			}
		})
	}
}

func TestSecureFileRejectedStoresNothing(t *testing.T) {
	const limit = 4 * service.MinChunkBytes
	file := pattern(3*service.MinChunkBytes, 3)
	size := func(n int64) *int64 { return &n }
	tests := []struct {
		name string
		// header is completed with the fixture's key when it names none.
		msgs   func(key *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest
		code   codes.Code
		reason recoveryv1.ErrorReason
		// uploads: the upload certainly reached the upstream before the
		// failure, so the test waits for the upstream to see it aborted.
		uploads bool
	}{
		{"larger than the limit", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			return append([]*recoveryv1.SecureFileRequest{headerMsg(byID(k))}, chunksOf(pattern(6*service.MinChunkBytes, 4), 2*service.MinChunkBytes)...)
		}, codes.ResourceExhausted, service.ReasonFileTooLarge, true},
		{"declared size over the limit", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			h := byID(k)
			h.SizeBytes = size(limit + 1)
			return append([]*recoveryv1.SecureFileRequest{headerMsg(h)}, chunksOf(file, service.MinChunkBytes)...)
		}, codes.ResourceExhausted, service.ReasonFileTooLarge, false},
		{"digest mismatch", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			h := byID(k)
			h.Sha256 = sha256Hex(pattern(3*service.MinChunkBytes, 5))
			return append([]*recoveryv1.SecureFileRequest{headerMsg(h)}, chunksOf(file, service.MinChunkBytes)...)
		}, codes.InvalidArgument, service.ReasonDigestMismatch, true},
		{"shorter than declared", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			h := byID(k)
			h.SizeBytes = size(limit)
			return append([]*recoveryv1.SecureFileRequest{headerMsg(h)}, chunksOf(file, service.MinChunkBytes)...)
		}, codes.InvalidArgument, service.ReasonSizeMismatch, true},
		{"longer than declared", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			h := byID(k)
			h.SizeBytes = size(2*service.MinChunkBytes + 100)
			return append([]*recoveryv1.SecureFileRequest{headerMsg(h)}, chunksOf(file, service.MinChunkBytes)...)
		}, codes.InvalidArgument, service.ReasonSizeMismatch, true},
		{"second header", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			msgs := append([]*recoveryv1.SecureFileRequest{headerMsg(byID(k))}, chunksOf(file, service.MinChunkBytes)...)
			return append(msgs, headerMsg(byID(k)), chunkMsg(file))
		}, codes.InvalidArgument, service.ReasonStreamOutOfOrder, true},
		{"a small chunk that is not the last", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			return []*recoveryv1.SecureFileRequest{headerMsg(byID(k)), chunkMsg(file[:service.MinChunkBytes-1]), chunkMsg(file[service.MinChunkBytes-1:])}
		}, codes.InvalidArgument, service.ReasonChunkTooSmall, true},
		{"empty file", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			return []*recoveryv1.SecureFileRequest{headerMsg(byID(k))}
		}, codes.InvalidArgument, service.ReasonEmptyFile, false},
		{"chunk before header", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			return append([]*recoveryv1.SecureFileRequest{chunkMsg(file)}, headerMsg(byID(k)))
		}, codes.InvalidArgument, service.ReasonStreamOutOfOrder, false},
		{"no message at all", func(*recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			return nil
		}, codes.InvalidArgument, service.ReasonStreamOutOfOrder, false},
		{"unknown key", func(*recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			h := &recoveryv1.SecureFileHeader{Key: &recoveryv1.SecureFileHeader_KeyId{KeyId: "6f1c2a9e-0000-4000-8000-000000000002"}}
			return append([]*recoveryv1.SecureFileRequest{headerMsg(h)}, chunksOf(file, service.MinChunkBytes)...)
		}, codes.NotFound, service.ReasonKeyNotFound, false},
		{"idempotency key without digest", func(k *recoveryv1.RecoveryKey) []*recoveryv1.SecureFileRequest {
			h := byID(k)
			h.IdempotencyKey = "file-1"
			return append([]*recoveryv1.SecureFileRequest{headerMsg(h)}, chunksOf(file, service.MinChunkBytes)...)
		}, codes.InvalidArgument, service.ReasonInvalidRequest, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := sandboxtest.NewWatch(secureFilePath, 0)
			f := newFixture(t, fixtureOptions{maxFileBytes: limit, wrap: w.Wrap})
			key := f.mustAssign("user-1", "org-1")
			_, err := f.sendFile(t.Context(), tt.msgs(key))
			wantStatus(t, err, tt.code, tt.reason)
			if tt.uploads {
				if code := w.NextEnd(t); code == http.StatusOK {
					t.Fatal("the upstream answered 200 to the aborted upload")
				}
			}
			if n := len(f.inspect.Backups(t)); n != 0 {
				t.Errorf("upstream stored %d backups", n)
			}
			if n := len(f.registryBackups()); n != 0 {
				t.Errorf("registry recorded %d backups", n)
			}
		})
	}
}

func byID(k *recoveryv1.RecoveryKey) *recoveryv1.SecureFileHeader {
	return &recoveryv1.SecureFileHeader{Key: &recoveryv1.SecureFileHeader_KeyId{KeyId: k.GetKeyId()}}
}

func TestSecureFileUpstreamLimit(t *testing.T) {
	// The upstream's limit is lower than ours: its 413 comes back as the
	// same reason, and nothing is stored.
	w := sandboxtest.NewWatch(secureFilePath, 0)
	f := newFixture(t, fixtureOptions{sandboxMaxFileBytes: service.MinChunkBytes, wrap: w.Wrap})
	key := f.mustAssign("user-1", "org-1")
	msgs := append([]*recoveryv1.SecureFileRequest{headerMsg(byID(key))}, chunksOf(pattern(5*service.MinChunkBytes, 6), service.MinChunkBytes)...)
	_, err := f.sendFile(t.Context(), msgs)
	wantStatus(t, err, codes.ResourceExhausted, service.ReasonFileTooLarge)
	if code := w.NextEnd(t); code != http.StatusRequestEntityTooLarge {
		t.Errorf("upstream answered %d, want 413", code)
	}
	if n := len(f.inspect.Backups(t)); n != 0 {
		t.Errorf("upstream stored %d backups", n)
	}
}

func TestSecureFileCallerCancelsMidStream(t *testing.T) {
	w := sandboxtest.NewWatch(secureFilePath, 0)
	f := newFixture(t, fixtureOptions{wrap: w.Wrap})
	key := f.mustAssign("user-1", "org-1")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := f.client.SecureFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(headerMsg(byID(key))); err != nil {
		t.Fatal(err)
	}
	for _, m := range chunksOf(pattern(64<<10, 7), 16<<10) {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	<-w.Arrived() // the upload is under way at the upstream
	cancel()
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.Canceled {
		t.Fatalf("CloseAndRecv after cancel = %v, want Canceled", err)
	}
	f.waitFinished("SecureFile", 1)
	if code := w.NextEnd(t); code == http.StatusOK {
		t.Fatal("the upstream answered 200 to the abandoned upload")
	}
	if n := len(f.inspect.Backups(t)); n != 0 {
		t.Errorf("upstream stored %d backups", n)
	}
	if n := len(f.registryBackups()); n != 0 {
		t.Errorf("registry recorded %d backups", n)
	}
}

func TestSecureFileIdempotency(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	key := f.mustAssign("user-1", "org-1")
	file := pattern(5000, 8)
	send := func(idem string, file []byte) (*recoveryv1.SecureFileResponse, error) {
		h := byID(key)
		h.IdempotencyKey = idem
		h.Sha256 = sha256Hex(file)
		return f.sendFile(t.Context(), append([]*recoveryv1.SecureFileRequest{headerMsg(h)}, chunksOf(file, service.MinChunkBytes)...))
	}
	first, err := send("file-1", file)
	if err != nil {
		t.Fatalf("first SecureFile: %v", err)
	}
	again, err := send("file-1", file)
	if err != nil {
		t.Fatalf("repeat SecureFile: %v", err)
	}
	if diff := cmp.Diff(first.GetBackup(), again.GetBackup(), protocmp.Transform()); diff != "" {
		t.Errorf("repeat returned another backup (-first +repeat):\n%s", diff)
	}
	_, err = send("file-1", pattern(5000, 9))
	wantStatus(t, err, codes.AlreadyExists, service.ReasonIdempotencyKeyReused)
	if n := len(f.inspect.Backups(t)); n != 1 {
		t.Errorf("upstream holds %d backups, want 1", n)
	}
}

func TestSecureFileForwardsChunksAsTheyArrive(t *testing.T) {
	// The upstream must have read the first half of the file while the
	// caller still holds the second half: a service that buffered the
	// file would never get there.
	w := sandboxtest.NewWatch(secureFilePath, 1<<20)
	f := newFixture(t, fixtureOptions{wrap: w.Wrap})
	key := f.mustAssign("user-1", "org-1")
	file := pattern(4<<20, 10)

	stream, err := f.client.SecureFile(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(headerMsg(byID(key))); err != nil {
		t.Fatal(err)
	}
	chunks := chunksOf(file, 256<<10)
	half := len(chunks) / 2
	for _, m := range chunks[:half] {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-w.Read():
	case <-time.After(30 * time.Second):
		t.Fatal("the upstream has not received the first megabyte while the caller holds the rest")
	}
	for _, m := range chunks[half:] {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("SecureFile: %v", err)
	}
	if resp.GetBackup().GetChecksumSha256() != sha256Hex(file) || resp.GetBackup().GetSizeBytes() != int64(len(file)) {
		t.Errorf("backup %v does not describe the file sent", resp.GetBackup())
	}
	if !bytes.Equal(f.inspect.Content(t, resp.GetBackup().GetBackupId()), file) {
		t.Error("the upstream stored other bytes than sent")
	}
}
