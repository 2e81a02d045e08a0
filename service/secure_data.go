package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
)

// SecureData encrypts (or accepts sealed) one small piece of recovery
// material to a verified key, stores it upstream and records the backup.
func (s *Server) SecureData(ctx context.Context, req *recoveryv1.SecureDataRequest) (*recoveryv1.SecureDataResponse, error) {
	// NOTE: deferred first so that every path, errors included, wipes the
	// request's copy of the plaintext once the handler is done with it.
	defer keycrypto.Zero(req.GetPlaintext())

	b, err := s.secureData(ctx, req)
	if err != nil {
		return nil, s.statusFromError(ctx, "SecureData", err)
	}
	return &recoveryv1.SecureDataResponse{Backup: backupToProto(b)}, nil
}

// sealedData is what goes upstream: ciphertext and the plaintext's checksum.
type sealedData struct {
	plaintext  []byte // nil when the caller sent it sealed
	ciphertext []byte
	checksum   string
}

func (s *Server) secureData(ctx context.Context, req *recoveryv1.SecureDataRequest) (*registry.Backup, error) {
	key, pub, err := s.resolveKey(ctx, req.GetKeyId(), req.GetPublicKeyHex(), "")
	if err != nil {
		return nil, err
	}
	payload, err := checkPayload(req)
	if err != nil {
		return nil, err
	}
	caller := auth.CallerName(ctx)
	meta := metadataFromProto(req.GetMetadata())
	backup := registry.Backup{
		BackupType:     backupTypeData,
		KeyID:          key.KeyID,
		CustomerID:     key.CustomerID,
		PackageID:      key.PackageID,
		Checksum:       payload.checksum,
		Metadata:       meta,
		Caller:         caller,
		IdempotencyKey: req.GetIdempotencyKey(),
	}

	hash := requestHash(backupTypeData, key.KeyID, payload.checksum, meta)
	recorded, token, err := s.reserveBackup(ctx, caller, backup.IdempotencyKey, hash, s.lease())
	if err != nil || recorded != nil {
		return recorded, err
	}

	if payload.plaintext != nil {
		payload.ciphertext, err = s.encrypt(ctx, pub, payload.plaintext)
		if err != nil {
			settle, cancel := s.settling(ctx)
			defer cancel()
			return nil, s.backupFailed(settle, token, true, err)
		}
	}

	// NOTE: the store runs on a context the caller's departure does not
	// cancel: once sent, the backup may exist upstream, and only an answer
	// lets it be recorded.
	call, cancelCall := context.WithTimeout(context.WithoutCancel(ctx), s.callTimeout)
	resp, err := s.upstream.SecureData(call, upstream.SecureDataRequest{
		PublicKey:  key.PublicKeyHex,
		Ciphertext: payload.ciphertext,
		Checksum:   payload.checksum,
		Metadata:   upstreamMetadata(meta),
	})
	cancelCall()
	settle, cancel := s.settling(ctx)
	defer cancel()
	if err != nil {
		return nil, s.backupFailed(settle, token, false, err)
	}
	if resp.Checksum != "" && resp.Checksum != payload.checksum {
		s.log.LogAttrs(ctx, slog.LevelWarn, "upstream confirmed a different checksum than sent",
			slog.String("backup_id", resp.BackupID), slog.String("key_id", key.KeyID))
	}
	backup.BackupID = resp.BackupID
	backup.SizeBytes = resp.DataSize
	if backup.SizeBytes == 0 {
		backup.SizeBytes = int64(len(payload.ciphertext))
	}
	backup.StoredAt = resp.StoredAt.UTC()
	if resp.StoredAt.IsZero() {
		backup.StoredAt = s.now().UTC()
	}
	annotate(ctx, attribute.String("backup_id", backup.BackupID))
	if err := s.recordBackup(settle, token, &backup); err != nil {
		return nil, err
	}
	return &backup, nil
}

// checkPayload validates the payload and computes the plaintext checksum.
// recoveryd's validation interceptor catches most of this first; the checks
// here keep the handler safe on its own and name the offending field.
func checkPayload(req *recoveryv1.SecureDataRequest) (sealedData, error) {
	switch p := req.GetPayload().(type) {
	case *recoveryv1.SecureDataRequest_Plaintext:
		pt := p.Plaintext
		switch {
		case len(pt) == 0:
			return sealedData{}, invalidField("plaintext", keycrypto.ErrEmptyPlaintext)
		case len(pt) > keycrypto.MaxPlaintextLen:
			return sealedData{}, invalidField("plaintext", fmt.Errorf("%w: %d bytes, at most %d",
				keycrypto.ErrPlaintextTooLarge, len(pt), keycrypto.MaxPlaintextLen))
		}
		return sealedData{plaintext: pt, checksum: keycrypto.Checksum(pt)}, nil
	case *recoveryv1.SecureDataRequest_Sealed:
		ct := p.Sealed.GetCiphertext()
		if len(ct) != keycrypto.CiphertextLen {
			return sealedData{}, invalidField("sealed.ciphertext", fmt.Errorf(
				"ciphertext is %d bytes; one RSA-4096 OAEP block is exactly %d", len(ct), keycrypto.CiphertextLen))
		}
		sum, err := keycrypto.ValidateChecksum(p.Sealed.GetChecksumSha256())
		if err != nil {
			return sealedData{}, invalidField("sealed.checksum_sha256", err)
		}
		return sealedData{ciphertext: ct, checksum: sum}, nil
	default:
		return sealedData{}, invalidField("payload", errors.New("exactly one of plaintext or sealed is required"))
	}
}

// encrypt seals plaintext to pub. The span records the plaintext's size
// only.
func (s *Server) encrypt(ctx context.Context, pub *keycrypto.PublicKey, plaintext []byte) ([]byte, error) {
	_, span := tracer.Start(ctx, "service.encrypt", trace.WithAttributes(
		attribute.Int("plaintext_size", len(plaintext))))
	defer span.End()
	ct, err := keycrypto.Encrypt(s.random, pub, plaintext)
	switch {
	case err == nil:
		return ct, nil
	case errors.Is(err, keycrypto.ErrPlaintextTooLarge), errors.Is(err, keycrypto.ErrEmptyPlaintext):
		return nil, invalidField("plaintext", err)
	default:
		return nil, fmt.Errorf("encrypting to key: %w", err)
	}
}
