package service

import (
	"cmp"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"time"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/auth"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultMaxFileBytes is the upstream's file limit (10 MiB): larger files
	// would only be refused after being streamed.
	DefaultMaxFileBytes int64 = 10 << 20
	// DefaultCallTimeout matches the upstream adapter's default per-call
	// timeout.
	DefaultCallTimeout = 30 * time.Second
	// assignmentWaitLimit bounds how long a request waits for a concurrent
	// request's assignment of the same pair before answering Aborted.
	assignmentWaitLimit = 10 * time.Second
	// inProgressRetryDelay is the RetryInfo delay suggested while another
	// request holds a reservation.
	inProgressRetryDelay = time.Second
	// registryWriteTimeout bounds the registry writes that finish a flow
	// after the caller has gone away.
	registryWriteTimeout = 10 * time.Second
)

// Config holds a Server's dependencies and limits.
type Config struct {
	// Upstream is the Partner Key Service adapter. Required.
	Upstream Upstream
	// Keys supplies the enclave verification keys. Required.
	Keys KeySource
	// Registry is the durable record. Required.
	Registry Registry
	// Authz decides which organisations a call may act for: recoveryd passes
	// its authenticator's Mode (auth.Enforced when a callers file is
	// configured). nil means auth.Disabled: a call that carries no caller
	// (authentication off) may act for every organisation and is recorded
	// with an empty caller name, while a call that does carry one is still
	// held to its organisations.
	Authz Authorizer
	// MaxFileBytes caps a SecureFile upload; 0 means DefaultMaxFileBytes.
	MaxFileBytes int64
	// Logger receives the full errors behind the fixed status messages; nil
	// means slog.Default().
	Logger *slog.Logger
	// Random feeds OAEP encryption; nil means crypto/rand.Reader.
	Random io.Reader
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// CallTimeout bounds one upstream AssignKey or SecureData call; 0 means
	// DefaultCallTimeout. An assignment's reservation lease is twice this.
	CallTimeout time.Duration
	// RegistryWriteTimeout bounds the registry writes that settle a store
	// once the upstream has answered (they run even if the caller has gone);
	// 0 means 10 s. It starts when those writes start, never before.
	RegistryWriteTimeout time.Duration
	// StreamIdleTimeout is how long a SecureFile stream may wait between
	// two messages before it is aborted (STREAM_IDLE_TIMEOUT); 0 means
	// DefaultStreamIdleTimeout.
	StreamIdleTimeout time.Duration
	// Spool, when set, keeps each SecureFile upload on disk while it is
	// forwarded, so that an upstream failure after the last chunk is
	// retried from there; nil makes uploads one-shot (never retried).
	Spool *Spool
	// AssignmentWait bounds how long an AssignKey waits for a concurrent
	// request holding the same pair before answering Aborted; 0 means
	// assignmentWaitLimit. Tests shorten it to see that answer quickly.
	AssignmentWait time.Duration
	// RequestHashKey keys the HMAC-SHA256 that identifies a backup
	// request's content in the registry (its idempotency request hash), so
	// that nothing derived from a plaintext is kept in a form anyone could
	// brute-force. Replicas sharing a registry need the same key, and it
	// must survive restarts (recoveryd reads it from
	// --registry-hmac-key-file). nil means a random key of this process:
	// idempotency keys then match only within it.
	RequestHashKey []byte
	// ReconcileInterval is how often the Reconciler looks for pairs whose
	// assignment outcome is unknown, and the first step of its backoff. 0
	// means no reconciler runs: such a pair then stays unknown until an
	// operator resolves it, and AssignKey says so (ASSIGNMENT_OUTCOME_UNKNOWN)
	// instead of ASSIGNMENT_BEING_RESOLVED.
	ReconcileInterval time.Duration
}

// Server implements recoveryv1.RecoveryServiceServer. It holds no state of
// its own beyond its dependencies, so replicas may run side by side on one
// shared registry.
type Server struct {
	recoveryv1.UnimplementedRecoveryServiceServer

	upstream     Upstream
	keys         KeySource
	assignments  Assignments
	recorded     Keys
	backups      Backups
	listings     Listings
	issues       AssignmentIssues
	claims       Claims
	audit        AuditTrail
	authz        Authorizer
	maxFileBytes int64
	log          *slog.Logger
	random       io.Reader
	now          func() time.Time
	callTimeout  time.Duration
	// registryWriteTimeout is Config.RegistryWriteTimeout.
	registryWriteTimeout time.Duration
	metrics              *instruments
	// assignmentWait bounds waiting for a concurrent assignment
	// (Config.AssignmentWait).
	assignmentWait time.Duration
	// streamIdleTimeout and spool are Config's.
	streamIdleTimeout time.Duration
	spool             *Spool
	// requestHashKey is Config.RequestHashKey.
	requestHashKey []byte
	// reconcileInterval is Config.ReconcileInterval.
	reconcileInterval time.Duration
	// resolutions counts the reconciler's and operators' resolutions.
	resolutions *resolutionInstruments
	// receipts caches the receipt checks of recorded keys (key_receipt.go).
	receipts *receiptCache
}

var _ recoveryv1.RecoveryServiceServer = (*Server)(nil)

// New builds a Server from cfg, filling defaults. It panics when a required
// dependency is missing: that is a wiring bug, not a runtime condition.
func New(cfg Config) *Server {
	if cfg.Upstream == nil || cfg.Keys == nil || cfg.Registry == nil {
		panic("service.New: Upstream, Keys and Registry are required")
	}
	s := &Server{
		upstream:     cfg.Upstream,
		keys:         cfg.Keys,
		assignments:  cfg.Registry,
		recorded:     cfg.Registry,
		backups:      cfg.Registry,
		listings:     cfg.Registry,
		issues:       cfg.Registry,
		claims:       cfg.Registry,
		audit:        cfg.Registry,
		authz:        cfg.Authz,
		maxFileBytes: cfg.MaxFileBytes,
		log:          cfg.Logger,
		random:       cfg.Random,
		now:          cfg.Now,
		callTimeout:  cfg.CallTimeout,

		registryWriteTimeout: cmp.Or(cfg.RegistryWriteTimeout, registryWriteTimeout),
		metrics:              newInstruments(),

		assignmentWait: cmp.Or(cfg.AssignmentWait, assignmentWaitLimit),

		streamIdleTimeout: cmp.Or(cfg.StreamIdleTimeout, DefaultStreamIdleTimeout),
		spool:             cfg.Spool,
		requestHashKey:    cfg.RequestHashKey,

		reconcileInterval: max(cfg.ReconcileInterval, 0),
		resolutions:       newResolutionInstruments(),
		receipts:          newReceiptCache(),
	}
	if s.authz == nil {
		s.authz = auth.Disabled
	}
	if s.maxFileBytes <= 0 {
		s.maxFileBytes = DefaultMaxFileBytes
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.random == nil {
		s.random = rand.Reader
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.callTimeout <= 0 {
		s.callTimeout = DefaultCallTimeout
	}
	if len(s.requestHashKey) == 0 {
		s.requestHashKey = []byte(rand.Text() + rand.Text())
	}
	return s
}

// settling is the context of the registry writes that settle a store after
// the upstream answered: the caller's departure does not cancel it (once
// sent, the backup may exist upstream, and its record is what a retry
// finds), and its timeout starts now, when those writes start.
func (s *Server) settling(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.registryWriteTimeout)
}

// lease is how long an assignment or backup reservation may stay pending
// before another request treats its outcome as unknown.
func (s *Server) lease() time.Duration { return 2 * s.callTimeout }
