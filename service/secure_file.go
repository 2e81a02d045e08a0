package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
)

// SecureFile streams an already-encrypted file upstream as it arrives: a
// header first, then chunks, forwarded without buffering the file in
// memory. The upstream upload starts at the first chunk. Any failure before
// the last chunk (a chunk too small, a stream idle too long, a limit)
// aborts the upstream request mid-body, so the upstream stores nothing.
// With a spool the bytes are also kept on disk, so that a failure after
// the last chunk is retried from there (see upstream.FileUpload).
func (s *Server) SecureFile(stream grpc.ClientStreamingServer[recoveryv1.SecureFileRequest, recoveryv1.SecureFileResponse]) error {
	ctx := stream.Context()
	b, err := s.secureFile(ctx, stream)
	if err != nil {
		return s.statusFromError(ctx, "SecureFile", err)
	}
	return stream.SendAndClose(&recoveryv1.SecureFileResponse{Backup: backupToProto(b)})
}

// fileStream is what secureFile needs of the gRPC stream.
type fileStream interface {
	Recv() (*recoveryv1.SecureFileRequest, error)
}

// fileHeader is a checked SecureFileHeader.
type fileHeader struct {
	key          *registry.Key
	meta         registry.BackupMetadata
	declaredSize int64  // 0: not declared
	declaredSHA  string // lowercase; "": not declared
	idempotency  string
}

func (s *Server) secureFile(ctx context.Context, raw fileStream) (*registry.Backup, error) {
	stream := newIdleStream(ctx, raw, s.streamIdleTimeout)
	first, err := stream.Recv()
	switch {
	case errors.Is(err, io.EOF):
		return nil, outOfOrder("header", "the stream ended before the header")
	case err != nil:
		return nil, err
	case first.GetHeader() == nil:
		return nil, outOfOrder("chunk", "the first message must be the header")
	}
	h, err := s.checkHeader(ctx, first.GetHeader())
	if err != nil {
		return nil, err
	}

	caller := auth.CallerName(ctx)
	backup := registry.Backup{
		BackupType:     backupTypeFile,
		KeyID:          h.key.KeyID,
		CustomerID:     h.key.CustomerID,
		PackageID:      h.key.PackageID,
		Metadata:       h.meta,
		Caller:         caller,
		IdempotencyKey: h.idempotency,
	}
	content := h.declaredSHA + "/" + strconv.FormatInt(h.declaredSize, 10)
	recorded, token, err := s.reserveBackup(ctx, backupTypeFile, caller, h.idempotency,
		requestHash(s.requestHashKey, backupTypeFile, h.key.KeyID, content, h.meta), fileUploadLease)
	if err != nil || recorded != nil {
		return recorded, err
	}

	// The upload ends with the caller's departure until Finish; see
	// upstream.FileUpload for the rules.
	sink := &fileSink{s: s, ctx: ctx, req: upstream.SecureFileRequest{
		PublicKey: h.key.PublicKeyHex,
		Metadata:  upstreamMetadata(h.meta),
	}}
	// NOTE: deferred first, so it runs after the upload has ended.
	defer sink.close()
	size, sum, err := s.pumpFile(stream, sink, h)
	if err != nil {
		// Aborted before the body was complete: nothing was stored.
		sink.abort(err)
		settle, cancel := s.settling(ctx)
		defer cancel()
		return nil, s.backupFailed(settle, token, true, err)
	}
	resp, err := sink.finish()
	// NOTE: the settling writes' timeout starts only now, after the whole
	// file went upstream, however long the caller took to stream it.
	settle, cancel := s.settling(ctx)
	defer cancel()
	if err != nil {
		return nil, s.backupFailed(settle, token, false, err)
	}

	backup.BackupID = resp.BackupID
	backup.Checksum = sum
	backup.SizeBytes = size
	backup.StoredAt = resp.StoredAt.UTC()
	if resp.StoredAt.IsZero() {
		backup.StoredAt = s.now().UTC()
	}
	annotate(ctx, attribute.String("backup_id", backup.BackupID), attribute.Int64("size_bytes", size))
	s.metrics.fileStored(ctx, size)
	if err := s.recordBackup(settle, token, &backup); err != nil {
		return nil, err
	}
	return &backup, nil
}

// checkHeader validates the header and resolves its key. recoveryd's
// validation interceptor checks the field rules first; the checks here keep
// the handler safe on its own.
func (s *Server) checkHeader(ctx context.Context, hdr *recoveryv1.SecureFileHeader) (fileHeader, error) {
	h := fileHeader{
		meta:        metadataFromProto(hdr.GetMetadata()),
		idempotency: hdr.GetIdempotencyKey(),
	}
	if hdr.SizeBytes != nil {
		h.declaredSize = hdr.GetSizeBytes()
		if h.declaredSize > s.maxFileBytes {
			return h, s.fileTooLarge(fmt.Errorf("declared size %d bytes", h.declaredSize))
		}
	}
	if hdr.GetSha256() != "" {
		sum, err := keycrypto.ValidateChecksum(hdr.GetSha256())
		if err != nil {
			return h, invalidField("header.sha256", errors.New("sha256 must be 64 hex characters"))
		}
		h.declaredSHA = sum
	}
	if h.idempotency != "" && h.declaredSHA == "" {
		// Without the digest a repeat cannot be told from a different
		// file before the file has been streamed.
		return h, invalidField("header.sha256", errors.New("sha256 is required when idempotency_key is set"))
	}
	key, _, err := s.resolveKey(ctx, hdr.GetKeyId(), hdr.GetPublicKeyHex(), "header.")
	if err != nil {
		return h, err
	}
	h.key = key
	return h, nil
}

// pumpFile forwards chunks to up as they arrive, counting and hashing
// them, and checks the result against the limit, the chunk minimum and the
// header's declarations. On any failure it returns why; the caller aborts
// the upload.
//
// NOTE: a chunk is done with (hashed, spooled, taken by the upload) before
// the next message is asked for, and never kept after: recoveryd lends each
// chunk's buffer from a pool and takes it back at the next receive (see
// chunkBuffers in cmd/recoveryd/app).
func (s *Server) pumpFile(stream fileStream, up io.Writer, h fileHeader) (size int64, sum string, err error) {
	digest := sha256.New()
	short := 0 // the previous chunk's size when below MinChunkBytes
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, "", err
		}
		if msg.GetHeader() != nil {
			return 0, "", outOfOrder("header", "a second header arrived after the file began")
		}
		chunk := msg.GetChunk()
		if len(chunk) == 0 {
			continue // nothing to forward; validation normally refuses it
		}
		if short > 0 {
			// Only the last chunk may be small, and that one was not.
			return 0, "", chunkTooSmall(short)
		}
		if len(chunk) < MinChunkBytes {
			short = len(chunk)
		}
		size += int64(len(chunk))
		switch {
		case size > s.maxFileBytes:
			return 0, "", s.fileTooLarge(fmt.Errorf("more than %d bytes received", s.maxFileBytes))
		case h.declaredSize > 0 && size > h.declaredSize:
			return 0, "", sizeMismatch(h.declaredSize, size)
		}
		digest.Write(chunk)
		if _, err := up.Write(chunk); err != nil {
			return 0, "", err
		}
	}
	sum = hex.EncodeToString(digest.Sum(nil))
	switch {
	case size == 0:
		return 0, "", fail(ReasonEmptyFile, errors.New("no chunk carried any bytes"))
	case h.declaredSize > 0 && size != h.declaredSize:
		return 0, "", sizeMismatch(h.declaredSize, size)
	case h.declaredSHA != "" && sum != h.declaredSHA:
		return 0, "", fail(ReasonDigestMismatch, errors.New("received bytes hash differently from the declared sha256"))
	}
	return size, sum, nil
}

func outOfOrder(field, why string) *failure {
	f := fail(ReasonStreamOutOfOrder, errors.New(why))
	f.violations = []*errdetails.BadRequest_FieldViolation{{Field: field, Description: why, Reason: auth.ReasonName(ReasonStreamOutOfOrder)}}
	return f
}

func sizeMismatch(declared, received int64) *failure {
	f := fail(ReasonSizeMismatch, fmt.Errorf("declared %d bytes, received %d or more", declared, received))
	f.metadata = map[string]string{"declared_size_bytes": strconv.FormatInt(declared, 10)}
	return f
}

func (s *Server) fileTooLarge(cause error) *failure {
	f := fail(ReasonFileTooLarge, cause)
	f.metadata = map[string]string{"max_bytes": strconv.FormatInt(s.maxFileBytes, 10)}
	return f
}
