package service

import (
	"context"
	"time"

	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
)

// Upstream is what the service needs of the Partner Key Service adapter; a
// *upstream.Client satisfies it.
type Upstream interface {
	AssignKey(ctx context.Context, req upstream.AssignKeyRequest) (*upstream.AssignKeyResponse, error)
	SecureData(ctx context.Context, req upstream.SecureDataRequest) (*upstream.SecureDataResponse, error)
	StartSecureFile(ctx context.Context, req upstream.SecureFileRequest) (*upstream.FileUpload, error)
}

// KeySource supplies the enclave verification keys that assign-key
// signatures are checked against.
type KeySource = upstream.KeySource

// Registry is what the service needs of the durable record; a
// *registry.Store satisfies it.
type Registry interface {
	ReserveAssignment(ctx context.Context, terms registry.KeyTerms, lease time.Duration) (registry.AssignmentReservation, error)
	CompleteAssignment(ctx context.Context, token string, key registry.Key) error
	ReleaseAssignment(ctx context.Context, token string) error
	FailAssignment(ctx context.Context, token string, state registry.AssignmentState, reason string) error
	GetKey(ctx context.Context, keyID string) (*registry.Key, error)
	GetKeyByPublicKey(ctx context.Context, publicKeyHex string) (*registry.Key, error)
	ListKeys(ctx context.Context, f registry.KeyFilter, p registry.Page) ([]registry.Key, string, error)
	ReserveBackup(ctx context.Context, scope, idempotencyKey, requestHash string, lease time.Duration) (registry.BackupReservation, error)
	CompleteBackup(ctx context.Context, token string, b registry.Backup) error
	ReleaseBackup(ctx context.Context, token string) error
	FailBackup(ctx context.Context, token, reason string) error
	RecordBackup(ctx context.Context, b registry.Backup) error
	ListBackups(ctx context.Context, f registry.BackupFilter, p registry.Page) ([]registry.Backup, string, error)
}

// Authorizer decides which organisations the call in a context may act for;
// an auth.Mode satisfies it (auth.Enforced behind recoveryd's authentication
// interceptor, auth.Disabled without one). Handlers ask it before any
// registry write or upstream call, so a refused request changes nothing.
type Authorizer interface {
	// Authorize returns nil when the call may act for the organisation
	// customerID, otherwise a PermissionDenied (ORGANISATION_NOT_ALLOWED) or
	// Unauthenticated status with a google.rpc.ErrorInfo.
	Authorize(ctx context.Context, customerID string) error
	// Scope is the organisation filter for a listing made by the call: nil
	// for every organisation, otherwise only those listed (possibly none).
	Scope(ctx context.Context) ([]string, error)
}

// Compile-time proof that the real dependencies fit.
var (
	_ Upstream   = (*upstream.Client)(nil)
	_ Registry   = (*registry.Store)(nil)
	_ Authorizer = auth.Disabled
)
