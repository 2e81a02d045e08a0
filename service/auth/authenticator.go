package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// Config configures an Authenticator.
type Config struct {
	// CallersFile is the path of the callers file (recoveryd's
	// --caller-tokens-file). Required.
	CallersFile string
	// PublicReflection lets unauthenticated callers use server reflection;
	// meant for development, where operators browse with grpcurl. Health is
	// always public.
	PublicReflection bool
	// Logger receives every refusal (reason, method, peer) and, at debug
	// level, every authenticated call; nil means slog.Default(). Tokens never
	// reach it, only an 8-hex-character fingerprint of a refused one.
	Logger *slog.Logger
	// ClientTrustDomain, when set, is the SPIFFE trust domain whose IDs name
	// callers by their exact path (see CallerSet.NamesInCertificate), e.g.
	// "prod.example"; "" matches client certificates by whole URI or DNS
	// name only.
	ClientTrustDomain string
	// OnReload, when set, is called after every load of the callers file
	// after the first, with its error (nil when the new set is in force). It
	// lets recoveryd and tests observe SIGHUP reloads, which are otherwise
	// asynchronous.
	OnReload func(error)
}

// Authenticator authenticates gRPC calls against the callers file and holds
// the set in force. It is safe for concurrent use; Reload swaps the set
// atomically, so a call sees either the old set or the new one, whole.
//
// A nil *Authenticator means caller authentication is off: its interceptors
// pass every call through and its Mode is Disabled, so recoveryd assembles
// the same interceptor chain either way.
type Authenticator struct {
	path             string
	publicReflection bool
	logger           *slog.Logger
	onReload         func(error)
	trustDomain      spiffeid.TrustDomain

	set atomic.Pointer[CallerSet]
	// reloadMu orders reloads, so that two concurrent ones cannot store
	// their sets out of order (the older file winning).
	reloadMu sync.Mutex
}

// New loads cfg.CallersFile and returns an Authenticator enforcing it. An
// invalid file is an error (a *FileError) and no Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.CallersFile == "" {
		return nil, errors.New("auth: no callers file configured")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	trustDomain, err := ParseTrustDomain(cfg.ClientTrustDomain)
	if err != nil {
		return nil, fmt.Errorf("auth: client %w", err)
	}
	set, err := LoadCallersFile(cfg.CallersFile)
	instruments.reload(context.Background(), set, err)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{
		path:             cfg.CallersFile,
		publicReflection: cfg.PublicReflection,
		logger:           logger,
		onReload:         cfg.OnReload,
		trustDomain:      trustDomain,
	}
	a.set.Store(set)
	return a, nil
}

// Reload reads the callers file again and, when it is valid, puts the new
// set in force for every call that starts afterwards. When it is invalid the
// current set stays in force and the error says what to fix.
func (a *Authenticator) Reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	set, err := LoadCallersFile(a.path)
	instruments.reload(context.Background(), set, err)
	if err == nil {
		a.set.Store(set)
	}
	if a.onReload != nil {
		a.onReload(err)
	}
	return err
}

// Callers is the caller set in force.
func (a *Authenticator) Callers() *CallerSet {
	return a.set.Load()
}

// Mode is the authorization mode that goes with this authenticator:
// Enforced, or Disabled for a nil *Authenticator (authentication off).
func (a *Authenticator) Mode() Mode {
	if a == nil {
		return Disabled
	}
	return Enforced
}

// AuthFunc authenticates one call, for go-grpc-middleware's
// interceptors/auth: it returns ctx carrying the Caller (see CallerFrom), or
// an Unauthenticated status with an ErrorInfo reason. The rules are in the
// package documentation.
func (a *Authenticator) AuthFunc(ctx context.Context) (context.Context, error) {
	set := a.set.Load()
	caller, fingerprint, ref := authenticate(ctx, set, a.trustDomain)
	method, _ := grpc.Method(ctx)
	if ref != nil {
		a.refused(ctx, method, fingerprint, ref)
		return ctx, ref.status()
	}
	instruments.decision(ctx, stageAuthenticate, outcomeAllowed, recoveryv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("recovery.caller", caller.Name))
	a.logger.LogAttrs(ctx, slog.LevelDebug, "caller authenticated",
		slog.String("caller", caller.Name), slog.String("method", method))
	return WithCaller(ctx, caller), nil
}

// refused counts and logs one refused authentication (fingerprint: of the
// token presented, "" for none).
func (a *Authenticator) refused(ctx context.Context, method, fingerprint string, ref *refusal) {
	instruments.decision(ctx, stageAuthenticate, outcomeDenied, ref.reason)
	attrs := []slog.Attr{slog.String("reason", ReasonName(ref.reason)), slog.String("method", method), slog.String("peer", peerAddress(ctx))}
	if fingerprint != "" {
		attrs = append(attrs, slog.String("token_sha256_prefix", fingerprint))
	}
	a.logger.LogAttrs(ctx, slog.LevelWarn, "caller refused", attrs...)
}

// authenticate applies the rules to one call: the certificate (if any) and
// the token (if any) must each name a known caller, and the same one. It
// returns the token's fingerprint for the log whenever a token was parsed.
func authenticate(ctx context.Context, set *CallerSet, trustDomain spiffeid.TrustDomain) (Caller, string, *refusal) {
	cert, ref := certFromPeer(ctx)
	if ref != nil {
		return Caller{}, "", ref
	}
	tok, ref := tokenFromMetadata(ctx)
	if ref != nil {
		return Caller{}, "", ref
	}
	var fingerprint string
	var byToken, byCert *Caller
	if tok.present {
		fingerprint = tokenFingerprint(tok.token)
		c, ok := set.MatchToken(tok.token)
		if !ok {
			return Caller{}, fingerprint, &refusal{reason: ReasonTokenInvalid, message: msgTokenInvalid}
		}
		byToken = &c
	}
	if cert.leaf != nil {
		names := set.NamesInCertificate(cert.leaf, trustDomain)
		switch len(names) {
		case 0:
			return Caller{}, fingerprint, &refusal{reason: ReasonCertUnknown, message: msgCertUnknown}
		case 1:
			c, _ := set.Lookup(names[0])
			byCert = &c
		default:
			return Caller{}, fingerprint, &refusal{reason: ReasonIdentityConflict, message: msgIdentityConflict}
		}
	}
	switch {
	case byToken != nil && byCert != nil && byToken.Name != byCert.Name:
		return Caller{}, fingerprint, &refusal{reason: ReasonIdentityConflict, message: msgIdentityConflict}
	case byToken != nil:
		return *byToken, fingerprint, nil
	case byCert != nil:
		return *byCert, fingerprint, nil
	}
	return Caller{}, "", &refusal{reason: ReasonTokenMissing, message: msgTokenMissing}
}

// peerAddress is the remote address of the call, for logs.
func peerAddress(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
