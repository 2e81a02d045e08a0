package sandbox

import (
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
)

// Rules of the public_key field of secure/data and secure/file.
const (
	minPublicKeyHexLen = 32
	maxPublicKeyHexLen = 4096
	// PaddingOAEP is the only padding_type the partner endpoint accepts.
	PaddingOAEP = "OAEP"
)

// storedAtLayout is RFC 3339 with milliseconds, always UTC.
const storedAtLayout = "2006-01-02T15:04:05.000Z07:00"

// Backup types as the contract names them.
const (
	BackupTypeData = "data"
	BackupTypeFile = "file"
)

// secureDataResponse is the 200 body of POST /v1/partner/secure/data.
type secureDataResponse struct {
	BackupID   string           `json:"backup_id"`
	Checksum   string           `json:"checksum"`
	DataSize   int              `json:"data_size"`
	BackupType string           `json:"backup_type"`
	Metadata   responseMetadata `json:"metadata"`
}

// responseMetadata is the sent metadata plus stored_at.
type responseMetadata struct {
	BackupMetadata
	StoredAt string `json:"stored_at"`
}

func newResponseMetadata(m BackupMetadata, storedAt time.Time) responseMetadata {
	return responseMetadata{BackupMetadata: m, StoredAt: storedAt.UTC().Format(storedAtLayout)}
}

// verifyData does what the enclave does with secure/data: decrypt with the
// key's private half and check the plaintext's SHA-256 against checksum.
func verifyData(key *keyRecord, ciphertext []byte, checksum string) *apiError {
	plaintext, err := keycrypto.Decrypt(key.private, ciphertext)
	if err != nil {
		return errVerification("Verification failed: data does not decrypt with this key " +
			"(RSA-OAEP with SHA-256 as both the OAEP and the MGF1 hash, empty label)")
	}
	sum := keycrypto.Checksum(plaintext)
	keycrypto.Zero(plaintext)
	if sum != checksum {
		return errVerification("Verification failed: checksum does not match the SHA-256 " +
			"of the decrypted plaintext (compute it over the plaintext, not the ciphertext)")
	}
	return nil
}

// secureData serves POST /v1/partner/secure/data: like the enclave it
// decrypts the ciphertext with the key's private half and checks the
// plaintext's SHA-256 against checksum before storing anything.
func (s *Server) secureData(r *http.Request, _ *Token) (any, *apiError) {
	obj, apiErr := readJSONObject(r)
	if apiErr != nil {
		return nil, apiErr
	}
	fe := fieldErrors{}
	publicHex := obj.requiredLong("public_key", fe)
	if _, bad := fe["public_key"]; !bad {
		checkPublicKeyHex(publicHex, "public_key", fe)
	}
	var ciphertext []byte
	if data := obj.requiredLong("data", fe); data != "" {
		var err error
		ciphertext, err = base64.StdEncoding.Strict().DecodeString(data)
		if err != nil {
			fe.add("data", "must be standard base64 (RFC 4648 alphabet with padding)")
		}
	}
	checksum := obj.required("checksum", "checksum", fe)
	if _, bad := fe["checksum"]; !bad {
		var err error
		if checksum, err = keycrypto.ValidateChecksum(checksum); err != nil {
			fe.add("checksum", "must be 64 hex characters: the SHA-256 of the plaintext")
		}
	}
	if p := obj.str("padding_type", "padding_type", fe); p != "" && p != PaddingOAEP {
		fe.add("padding_type", "only OAEP is supported")
	}
	meta := readMetadata(obj.object("metadata", false, fe), fe)
	if err := fe.err(); err != nil {
		return nil, err
	}

	key := s.store.keyByPublicHex(publicHex)
	if key == nil {
		return nil, errNotFound("Key not found")
	}
	if !s.cfg.SkipDataVerification {
		if apiErr := verifyData(key, ciphertext, checksum); apiErr != nil {
			return nil, apiErr
		}
	} else if len(ciphertext) != keycrypto.CiphertextLen {
		// Unverified, but still one RSA-4096 block: a benchmark must not
		// get away with storing something the real enclave refuses.
		return nil, errVerification("Verification failed: data is not one RSA-4096 OAEP block")
	}

	rec := &backupRecord{
		BackupID:   newUUID(),
		BackupType: BackupTypeData,
		KeyID:      key.KeyID,
		CustomerID: key.CustomerID,
		PackageID:  key.PackageID,
		SizeBytes:  int64(len(ciphertext)),
		SHA256:     sha256Hex(ciphertext),
		Checksum:   checksum,
		Metadata:   meta,
		StoredAt:   s.cfg.Now().UTC().Truncate(time.Millisecond),
	}
	content, err := s.store.newUpload(int64(len(ciphertext)))
	if err == nil {
		_, err = content.Write(ciphertext)
	}
	if err == nil {
		err = s.store.commitBackup(rec, content)
	}
	if content != nil {
		content.discard()
	}
	if err != nil {
		s.log.Error("sandbox: storing a data backup failed", "error", err)
		return nil, errInternal()
	}
	logAttrs(r, "key_id", rec.KeyID, "backup_id", rec.BackupID, "size_bytes", rec.SizeBytes)
	return &secureDataResponse{
		BackupID:   rec.BackupID,
		Checksum:   rec.Checksum,
		DataSize:   len(ciphertext),
		BackupType: BackupTypeData,
		Metadata:   newResponseMetadata(meta, rec.StoredAt),
	}, nil
}

// checkPublicKeyHex applies the contract's public_key rule: 32 to 4096
// characters of ^[0-9a-fA-F]+$.
func checkPublicKeyHex(h, field string, fe fieldErrors) {
	if len(h) < minPublicKeyHexLen || len(h) > maxPublicKeyHexLen {
		fe.add(field, "must be 32 to 4096 hex characters")
		return
	}
	if strings.IndexFunc(h, func(c rune) bool {
		return !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')
	}) >= 0 {
		fe.add(field, "must be hex (0-9, a-f, A-F)")
	}
}
