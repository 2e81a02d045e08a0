package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

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
	payload, err := payloadOf(req)
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
		Metadata:       meta,
		Caller:         caller,
		IdempotencyKey: req.GetIdempotencyKey(),
	}

	hash := requestHash(s.requestHashKey, backupTypeData, key.KeyID, payload.checksum, meta)
	recorded, token, err := s.reserveBackup(ctx, backupTypeData, caller, backup.IdempotencyKey, hash, s.lease())
	if err != nil {
		return nil, err
	}
	if recorded != nil {
		return echoChecksum(recorded, payload.checksum), nil
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
	// NOTE: the registry keeps no checksum of a data backup: its checksum
	// is the plaintext's, from which a low-entropy secret could be
	// brute-forced by anyone who reads the registry or lists it.
	backup.Checksum = ""
	annotate(ctx, attribute.String("backup_id", backup.BackupID))
	if err := s.recordBackup(settle, token, &backup); err != nil {
		return nil, err
	}
	return echoChecksum(&backup, payload.checksum), nil
}

// echoChecksum is the backup as its sender gets it: with the plaintext's
// checksum the enclave verified, which the sender already holds. Only this
// answer carries it; the record and every listing carry none.
func echoChecksum(b *registry.Backup, plaintextChecksum string) *registry.Backup {
	out := *b
	out.Checksum = plaintextChecksum
	return &out
}

// payloadOf is the payload with its plaintext checksum. recoveryd's
// validation interceptor has enforced the proto's rules (one of the two set,
// plaintext 1-446 bytes, a 512-byte ciphertext, a 64-hex checksum).
func payloadOf(req *recoveryv1.SecureDataRequest) (sealedData, error) {
	switch p := req.GetPayload().(type) {
	case *recoveryv1.SecureDataRequest_Plaintext:
		return sealedData{plaintext: p.Plaintext, checksum: keycrypto.Checksum(p.Plaintext)}, nil
	case *recoveryv1.SecureDataRequest_Sealed:
		// Lower case, as the registry and the upstream compare it.
		return sealedData{ciphertext: p.Sealed.GetCiphertext(), checksum: strings.ToLower(p.Sealed.GetChecksumSha256())}, nil
	default:
		// NOTE: unreachable behind the validation interceptor; an error
		// (Internal) rather than an empty backup stored upstream.
		return sealedData{}, errors.New("SecureData reached the handler without a payload: is the validation interceptor missing from the chain?")
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
