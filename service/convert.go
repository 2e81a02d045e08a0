package service

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
)

// Wire values of the upstream contract and the registry.
const (
	environmentHot  = "HOT"
	environmentCold = "COLD"
	keyTypeRSA4096  = "rsa4096"
	backupTypeData  = "data"
	backupTypeFile  = "file"
)

// environmentName is the contract's name for env; "" for UNSPECIFIED or an
// unknown value (validation rejects those before a handler runs).
func environmentName(env recoveryv1.KeyEnvironment) string {
	switch env {
	case recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT:
		return environmentHot
	case recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_COLD:
		return environmentCold
	default:
		return ""
	}
}

func environmentFromName(name string) recoveryv1.KeyEnvironment {
	switch name {
	case environmentHot:
		return recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT
	case environmentCold:
		return recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_COLD
	default:
		return recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_UNSPECIFIED
	}
}

func backupTypeFromName(name string) recoveryv1.BackupType {
	switch name {
	case backupTypeData:
		return recoveryv1.BackupType_BACKUP_TYPE_DATA
	case backupTypeFile:
		return recoveryv1.BackupType_BACKUP_TYPE_FILE
	default:
		return recoveryv1.BackupType_BACKUP_TYPE_UNSPECIFIED
	}
}

// termsFromRequest is what an AssignKey request asks for, on behalf of caller.
func termsFromRequest(req *recoveryv1.AssignKeyRequest, caller string) registry.KeyTerms {
	return registry.KeyTerms{
		UserIdentifier: req.GetUserIdentifier(),
		CustomerID:     req.GetOrganisation().GetCustomerId(),
		CustomerName:   req.GetOrganisation().GetCustomerName(),
		PackageID:      req.GetPackage().GetPackageId(),
		PackageName:    req.GetPackage().GetPackageName(),
		KeyEnvironment: environmentName(req.GetKeyEnvironment()),
		Caller:         caller,
	}
}

// upstreamAssignRequest is the upstream call for terms, binding signWith.
func upstreamAssignRequest(terms registry.KeyTerms) upstream.AssignKeyRequest {
	return upstream.AssignKeyRequest{
		UserIdentifier: terms.UserIdentifier,
		KeyType:        keyTypeRSA4096,
		KeyEnvironment: terms.KeyEnvironment,
		CustomerID:     terms.CustomerID,
		CustomerName:   terms.CustomerName,
		PackageID:      terms.PackageID,
		PackageName:    terms.PackageName,
		SignWith:       append([]string(nil), signWith...),
	}
}

// keyToProto converts a recorded key, deriving the PEM the caller may
// encrypt with.
func keyToProto(k *registry.Key) (*recoveryv1.RecoveryKey, error) {
	pem, err := keycrypto.HexToPEM(k.PublicKeyHex)
	if err != nil {
		return nil, fmt.Errorf("recorded key %s has an unusable public key: %w", k.KeyID, err)
	}
	return keyToProtoPEM(k, pem), nil
}

// keyToProtoPEM is keyToProto with the key's PEM already made (the receipt
// check's, for a key it verified).
func keyToProtoPEM(k *registry.Key, pem string) *recoveryv1.RecoveryKey {
	return &recoveryv1.RecoveryKey{
		KeyId:          k.KeyID,
		PublicKeyHex:   k.PublicKeyHex,
		PublicKeyPem:   pem,
		KeyEnvironment: environmentFromName(k.KeyEnvironment),
		UserIdentifier: k.UserIdentifier,
		Organisation: &recoveryv1.Organisation{
			CustomerId:   k.CustomerID,
			CustomerName: k.CustomerName,
		},
		Package: &recoveryv1.Package{
			PackageId:   k.PackageID,
			PackageName: k.PackageName,
		},
		FingerprintSha256: k.Fingerprint,
		AssignedAt:        timestamp(k.AssignedAt),
		AssignedBy:        k.Caller,
		Receipt:           receiptToProto(k.Receipt),
	}
}

// receiptToProto is nil for a key recorded without a receipt.
func receiptToProto(r registry.Receipt) *recoveryv1.KeyReceipt {
	if r == (registry.Receipt{}) {
		return nil
	}
	return &recoveryv1.KeyReceipt{
		Signature:     r.Signature,
		SignedPayload: r.SignedPayload,
		SigningKeyId:  r.SigningKeyID,
	}
}

func backupToProto(b *registry.Backup) *recoveryv1.Backup {
	return &recoveryv1.Backup{
		BackupId:       b.BackupID,
		BackupType:     backupTypeFromName(b.BackupType),
		KeyId:          b.KeyID,
		ChecksumSha256: b.Checksum,
		SizeBytes:      b.SizeBytes,
		Metadata:       metadataToProto(b.Metadata),
		StoredAt:       timestamp(b.StoredAt),
		CustomerId:     b.CustomerID,
		PackageId:      b.PackageID,
		StoredBy:       b.Caller,
	}
}

// metadataToProto returns nil for empty metadata so that a backup stored
// without metadata reads back the way it was sent.
func metadataToProto(m registry.BackupMetadata) *recoveryv1.BackupMetadata {
	if m == (registry.BackupMetadata{}) {
		return nil
	}
	return &recoveryv1.BackupMetadata{
		Description:      m.Description,
		ContentType:      m.ContentType,
		OriginalFilename: m.OriginalFilename,
	}
}

func metadataFromProto(m *recoveryv1.BackupMetadata) registry.BackupMetadata {
	return registry.BackupMetadata{
		Description:      m.GetDescription(),
		ContentType:      m.GetContentType(),
		OriginalFilename: m.GetOriginalFilename(),
	}
}

func upstreamMetadata(m registry.BackupMetadata) upstream.Metadata {
	return upstream.Metadata{
		Description:      m.Description,
		ContentType:      m.ContentType,
		OriginalFilename: m.OriginalFilename,
	}
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
