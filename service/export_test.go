package service

import (
	"time"

	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// The few internals the external tests (package service_test, which run
// every call through the real server) need to look at the registry the way
// the flows do. Nothing here changes behaviour.

// TermsFromRequest is termsFromRequest: the registry key and terms a flow
// reserves for an AssignKey request, so a test can read that pair's state.
var TermsFromRequest = termsFromRequest

// Lease is the reservation lease of a Server whose CallTimeout is
// callTimeout, so a test reserves exactly as a request would.
func Lease(callTimeout time.Duration) time.Duration {
	return (&Server{callTimeout: callTimeout}).lease()
}

// DataRequestHash is the idempotency hash, under hashKey, of a SecureData
// request for keyID with the plaintext checksum and metadata, so a test can
// hold an idempotency key as an in-flight request would.
func DataRequestHash(hashKey []byte, keyID, checksum string, m *recoveryv1.BackupMetadata) string {
	return requestHash(hashKey, backupTypeData, keyID, checksum, metadataFromProto(m))
}

// StatusFromError is the single error-to-status mapping, which
// errors_test checks case by case without an RPC for each.
var StatusFromError = (*Server).statusFromError

// RegistryFailure marks err as the registry being unreachable, as the
// flows do, so the mapping of that case can be checked.
var RegistryFailure = registryFailure

// MappedReason is one entry of the mapping table: the code and the fixed
// message of a reason.
type MappedReason struct {
	Code    codes.Code
	Message string
}

// MappedReasons is a copy of the mapping table, so a test can check it
// against the proto's enum and a refusal against its fixed message.
func MappedReasons() map[recoveryv1.ErrorReason]MappedReason {
	out := make(map[recoveryv1.ErrorReason]MappedReason, len(reasonSpecs))
	for reason, spec := range reasonSpecs {
		out[reason] = MappedReason{Code: spec.code, Message: spec.message}
	}
	return out
}
