package service

import (
	"context"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
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
// signatures are checked against; what upstream.NewJWKSFetcher and
// upstream.LoadKeySourceFile return satisfies it.
type KeySource interface {
	// Keys returns the current keys, from a cache while it is fresh.
	Keys(ctx context.Context) ([]keycrypto.VerificationKey, error)
	// Refresh re-fetches once: a signature no cached key verifies may be
	// by a key published since.
	Refresh(ctx context.Context) ([]keycrypto.VerificationKey, error)
}

// Assignments is what AssignKey needs of the registry: the reservation that
// makes an assignment exactly-once per (user, organisation), and its end.
type Assignments interface {
	ReserveAssignment(ctx context.Context, terms registry.KeyTerms, lease time.Duration) (registry.AssignmentReservation, error)
	CompleteAssignment(ctx context.Context, token string, key registry.Key) error
	ReleaseAssignment(ctx context.Context, token string) error
	FailAssignment(ctx context.Context, token string, state registry.AssignmentState, reason string) error
}

// Keys is how every flow finds a recorded key: by id, or by the public key
// a caller sent instead.
type Keys interface {
	GetKey(ctx context.Context, keyID string) (*registry.Key, error)
	GetKeyByPublicKey(ctx context.Context, publicKeyHex string) (*registry.Key, error)
}

// Backups is what SecureData and SecureFile need of the registry: an
// idempotency reservation around the upstream store, and the record after.
type Backups interface {
	ReserveBackup(ctx context.Context, scope, idempotencyKey, requestHash string, lease time.Duration) (registry.BackupReservation, error)
	CompleteBackup(ctx context.Context, token string, b registry.Backup) error
	ReleaseBackup(ctx context.Context, token string) error
	FailBackup(ctx context.Context, token, reason string) error
	RecordBackup(ctx context.Context, b registry.Backup) error
}

// Listings is what the support RPCs (ListKeys, ListBackups) read, a page at
// a time.
type Listings interface {
	ListKeys(ctx context.Context, f registry.KeyFilter, p registry.Page) ([]registry.Key, string, error)
	ListBackups(ctx context.Context, f registry.BackupFilter, p registry.Page) ([]registry.Backup, string, error)
}

// AssignmentIssues is what the operators' service reads: the pairs whose
// assignment is not settled by a recorded key.
type AssignmentIssues interface {
	ListAssignmentIssues(ctx context.Context, f registry.AssignmentIssueFilter, p registry.Page) ([]registry.AssignmentIssue, string, error)
}

// AuditTrail is what the operators' service reads of the audit trail
// (recoveryd's audit writer appends to it).
type AuditTrail interface {
	ListAuditEvents(ctx context.Context, f registry.AuditFilter, p registry.Page) ([]registry.AuditEvent, string, error)
	VerifyAudit(ctx context.Context) (registry.AuditReport, error)
}

// Registry is the durable record as one store holds it, every flow's part;
// a *registry.Store satisfies it. The Server keeps each part apart, so a
// flow reaches only what it uses.
type Registry interface {
	Assignments
	Keys
	Backups
	Listings
	AssignmentIssues
	Claims
	AuditTrail
}

// Authorizer decides which organisations the call in a context may act for;
// an auth.Mode satisfies it (auth.Enforced behind recoveryd's authentication
// interceptor, auth.Disabled without one). Handlers ask it before any
// registry write or upstream call, so a refused request changes nothing.
type Authorizer interface {
	// Authorize returns nil when the call may act for the organisation
	// customerID, otherwise a *auth.Refusal (ORGANISATION_NOT_ALLOWED, or
	// CALLER_NOT_AUTHENTICATED), which statusFromError maps like any error.
	Authorize(ctx context.Context, customerID string) error
	// Scope is the organisation filter for a listing made by the call: nil
	// for every organisation, otherwise only those listed (possibly none).
	Scope(ctx context.Context) ([]string, error)
}

// Compile-time proof that the real dependencies fit.
var (
	_ Upstream   = (*upstream.Client)(nil)
	_ Registry   = (*registry.Store)(nil)
	_ KeySource  = upstream.KeySource(nil)
	_ Authorizer = auth.Disabled
)
