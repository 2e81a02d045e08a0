package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every error this service
// returns.
const ErrorDomain = "recovery.v1"

// Reasons this package reports, from the contract's ErrorReason enum (the
// proto documents each for callers; ErrorInfo.reason carries the name
// without its ERROR_REASON_ prefix). The short names keep the flows
// readable; callers branch on them, so a value is never renamed or reused.
const (
	ReasonInvalidRequest              = recoveryv1.ErrorReason_ERROR_REASON_INVALID_REQUEST
	ReasonPlaintextTooLarge           = recoveryv1.ErrorReason_ERROR_REASON_PLAINTEXT_TOO_LARGE
	ReasonInvalidPublicKey            = recoveryv1.ErrorReason_ERROR_REASON_INVALID_PUBLIC_KEY
	ReasonInvalidPageToken            = recoveryv1.ErrorReason_ERROR_REASON_INVALID_PAGE_TOKEN
	ReasonKeyNotFound                 = recoveryv1.ErrorReason_ERROR_REASON_KEY_NOT_FOUND
	ReasonAssignedElsewhere           = recoveryv1.ErrorReason_ERROR_REASON_ASSIGNED_ELSEWHERE
	ReasonAssignedWithDifferentTerms  = recoveryv1.ErrorReason_ERROR_REASON_ASSIGNED_WITH_DIFFERENT_TERMS
	ReasonAssignmentInProgress        = recoveryv1.ErrorReason_ERROR_REASON_ASSIGNMENT_IN_PROGRESS
	ReasonAssignmentOutcomeUnknown    = recoveryv1.ErrorReason_ERROR_REASON_ASSIGNMENT_OUTCOME_UNKNOWN
	ReasonAssignmentBeingResolved     = recoveryv1.ErrorReason_ERROR_REASON_ASSIGNMENT_BEING_RESOLVED
	ReasonAssignmentNotResolvable     = recoveryv1.ErrorReason_ERROR_REASON_ASSIGNMENT_NOT_RESOLVABLE
	ReasonAssignmentNotImportable     = recoveryv1.ErrorReason_ERROR_REASON_ASSIGNMENT_NOT_IMPORTABLE
	ReasonEnclaveSignatureInvalid     = recoveryv1.ErrorReason_ERROR_REASON_ENCLAVE_SIGNATURE_INVALID
	ReasonVerificationKeysUnavailable = recoveryv1.ErrorReason_ERROR_REASON_VERIFICATION_KEYS_UNAVAILABLE
	ReasonKeyReceiptInvalid           = recoveryv1.ErrorReason_ERROR_REASON_KEY_RECEIPT_INVALID
	ReasonIdempotencyKeyReused        = recoveryv1.ErrorReason_ERROR_REASON_IDEMPOTENCY_KEY_REUSED
	ReasonRequestInProgress           = recoveryv1.ErrorReason_ERROR_REASON_REQUEST_IN_PROGRESS
	ReasonAssignmentOrphaned          = recoveryv1.ErrorReason_ERROR_REASON_ASSIGNMENT_ORPHANED
	ReasonBackupOutcomeUnknown        = recoveryv1.ErrorReason_ERROR_REASON_BACKUP_OUTCOME_UNKNOWN
	ReasonFileTooLarge                = recoveryv1.ErrorReason_ERROR_REASON_FILE_TOO_LARGE
	ReasonDigestMismatch              = recoveryv1.ErrorReason_ERROR_REASON_DIGEST_MISMATCH
	ReasonSizeMismatch                = recoveryv1.ErrorReason_ERROR_REASON_SIZE_MISMATCH
	ReasonStreamOutOfOrder            = recoveryv1.ErrorReason_ERROR_REASON_STREAM_OUT_OF_ORDER
	ReasonEmptyFile                   = recoveryv1.ErrorReason_ERROR_REASON_EMPTY_FILE
	ReasonUpstreamRejectedRequest     = recoveryv1.ErrorReason_ERROR_REASON_UPSTREAM_REJECTED_REQUEST
	ReasonUpstreamCredentialsRejected = recoveryv1.ErrorReason_ERROR_REASON_UPSTREAM_CREDENTIALS_REJECTED
	ReasonKeyNotFoundUpstream         = recoveryv1.ErrorReason_ERROR_REASON_KEY_NOT_FOUND_UPSTREAM
	ReasonUpstreamContractMismatch    = recoveryv1.ErrorReason_ERROR_REASON_UPSTREAM_CONTRACT_MISMATCH
	ReasonUpstreamRateLimited         = recoveryv1.ErrorReason_ERROR_REASON_UPSTREAM_RATE_LIMITED
	ReasonUpstreamUnavailable         = recoveryv1.ErrorReason_ERROR_REASON_UPSTREAM_UNAVAILABLE
	ReasonRegistryUnavailable         = recoveryv1.ErrorReason_ERROR_REASON_REGISTRY_UNAVAILABLE
	ReasonDeadlineExceeded            = recoveryv1.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED
	ReasonCancelled                   = recoveryv1.ErrorReason_ERROR_REASON_CANCELLED
	ReasonInternal                    = recoveryv1.ErrorReason_ERROR_REASON_INTERNAL
	ReasonRateLimited                 = recoveryv1.ErrorReason_ERROR_REASON_RATE_LIMITED
	ReasonChunkTooSmall               = recoveryv1.ErrorReason_ERROR_REASON_CHUNK_TOO_SMALL
	ReasonStreamIdleTimeout           = recoveryv1.ErrorReason_ERROR_REASON_STREAM_IDLE_TIMEOUT
	ReasonAuditUnavailable            = recoveryv1.ErrorReason_ERROR_REASON_AUDIT_UNAVAILABLE
	// ReasonOrganisationNotAllowed and ReasonCallerNotAuthenticated are
	// service/auth's refusals (a *auth.Refusal), mapped in reasonSpecs like
	// every other reason.
	ReasonOrganisationNotAllowed = auth.ReasonOrganisationNotAllowed
	ReasonCallerNotAuthenticated = auth.ReasonNotAuthenticated
	ReasonOperatorRoleRequired   = auth.ReasonOperatorRoleRequired
)

// reasonSpec is how one reason is reported: its gRPC code, the fixed message
// a person can act on, and how loudly the full error is logged.
type reasonSpec struct {
	code    codes.Code
	message string
	level   slog.Level
}

// reasonSpecs is the one table of codes and messages. Messages are fixed
// strings: nothing from an upstream body, a database or the request's secret
// fields ever reaches a status message.
var reasonSpecs = map[recoveryv1.ErrorReason]reasonSpec{
	ReasonInvalidRequest: {codes.InvalidArgument,
		"the request is invalid: see the BadRequest field violations", slog.LevelInfo},
	ReasonPlaintextTooLarge: {codes.InvalidArgument,
		"plaintext is larger than 446 bytes, the most one RSA-4096 OAEP-SHA256 block holds: store larger material with SecureFile", slog.LevelInfo},
	ReasonInvalidPublicKey: {codes.InvalidArgument,
		"public_key_hex is not the hex of an RSA-4096 DER SubjectPublicKeyInfo: see the field violation", slog.LevelInfo},
	ReasonInvalidPageToken: {codes.InvalidArgument,
		"page_token was not issued by this service: start again with an empty page_token", slog.LevelInfo},
	ReasonKeyNotFound: {codes.NotFound,
		"no key with this key_id or public key was assigned through AssignKey for an organisation this caller may act for", slog.LevelInfo},
	ReasonAssignedElsewhere: {codes.FailedPrecondition,
		"the Partner Key Service already holds a key for this user_identifier and organisation that this service never recorded: an operator must reconcile it", slog.LevelError},
	ReasonAssignedWithDifferentTerms: {codes.AlreadyExists,
		"a key is already assigned for this user_identifier and organisation with a different key_environment or package: see the recorded values in ErrorInfo metadata", slog.LevelInfo},
	ReasonAssignmentInProgress: {codes.Aborted,
		"another request is assigning a key for this user_identifier and organisation: retry after the RetryInfo delay", slog.LevelWarn},
	ReasonAssignmentOrphaned: {codes.FailedPrecondition,
		"a key was assigned upstream for this user_identifier and organisation but its answer was lost: an operator must import the re-issued key", slog.LevelWarn},
	ReasonAssignmentOutcomeUnknown: {codes.FailedPrecondition,
		"an earlier assignment for this user_identifier and organisation has an unknown outcome: an operator must reconcile it before a key can be returned", slog.LevelError},
	ReasonAssignmentBeingResolved: {codes.Unavailable,
		"the outcome of an earlier assignment for this user_identifier and organisation is being resolved with the Partner Key Service: retry after the RetryInfo delay", slog.LevelWarn},
	ReasonAssignmentNotResolvable: {codes.FailedPrecondition,
		"this pair's assignment outcome is not unknown (ErrorInfo metadata \"state\"), so there is nothing to re-send: see ListAssignmentIssues", slog.LevelInfo},
	ReasonAssignmentNotImportable: {codes.FailedPrecondition,
		"the key was not imported and nothing changed: the pair is not orphaned or assigned elsewhere (ErrorInfo metadata \"state\"), or the key failed verification (metadata \"check\") or is recorded for another pair", slog.LevelWarn},
	ReasonEnclaveSignatureInvalid: {codes.FailedPrecondition,
		"the key assigned by the Partner Key Service failed enclave signature verification and was not recorded: an operator has been alerted", slog.LevelError},
	ReasonKeyReceiptInvalid: {codes.FailedPrecondition,
		"the recorded key no longer verifies against the enclave signature recorded with it, so it was not used: an operator has been alerted", slog.LevelError},
	ReasonVerificationKeysUnavailable: {codes.Unavailable,
		"the enclave verification keys could not be loaded, so no key was assigned: retry later", slog.LevelError},
	ReasonIdempotencyKeyReused: {codes.AlreadyExists,
		"idempotency_key was already used for a different request: use a new idempotency_key for new material", slog.LevelInfo},
	ReasonRequestInProgress: {codes.Aborted,
		"a request with this idempotency_key is still in progress: retry after the RetryInfo delay", slog.LevelWarn},
	ReasonBackupOutcomeUnknown: {codes.FailedPrecondition,
		"the Partner Key Service may hold this backup, but recoveryd could not confirm or record it: do not treat it as stored nor as lost; retry with the same idempotency_key and the same request, which stores it again (the upstream may then hold an extra copy) and answers with the recorded backup", slog.LevelError},
	ReasonFileTooLarge: {codes.ResourceExhausted,
		"the file is larger than the size limit: nothing was stored", slog.LevelInfo},
	ReasonDigestMismatch: {codes.InvalidArgument,
		"the bytes received do not hash to the declared sha256: nothing was stored", slog.LevelInfo},
	ReasonSizeMismatch: {codes.InvalidArgument,
		"the bytes received do not add up to the declared size_bytes: nothing was stored", slog.LevelInfo},
	ReasonStreamOutOfOrder: {codes.InvalidArgument,
		"a SecureFile stream is one header message followed only by chunk messages: nothing was stored", slog.LevelInfo},
	ReasonEmptyFile: {codes.InvalidArgument,
		"the stream ended without any file bytes: nothing was stored", slog.LevelInfo},
	ReasonUpstreamRejectedRequest: {codes.InvalidArgument,
		"the Partner Key Service rejected the request as invalid (for sealed data: the ciphertext must be RSA-OAEP with SHA-256 as OAEP and MGF1 hash to this key, and the checksum the SHA-256 of the plaintext): see upstream_fields in ErrorInfo metadata", slog.LevelWarn},
	ReasonUpstreamCredentialsRejected: {codes.Internal,
		"the service's credentials for the Partner Key Service were rejected: this is a service configuration fault, contact the operator", slog.LevelError},
	ReasonKeyNotFoundUpstream: {codes.NotFound,
		"the Partner Key Service does not know this key", slog.LevelWarn},
	ReasonUpstreamContractMismatch: {codes.Internal,
		"the Partner Key Service answered outside its contract: contact the operator", slog.LevelError},
	ReasonUpstreamRateLimited: {codes.Unavailable,
		"the Partner Key Service rate limit was reached: retry after the RetryInfo delay", slog.LevelWarn},
	ReasonUpstreamUnavailable: {codes.Unavailable,
		"the Partner Key Service is unavailable: retry later", slog.LevelWarn},
	ReasonRegistryUnavailable: {codes.Unavailable,
		"the service's registry is unavailable: retry later", slog.LevelError},
	ReasonDeadlineExceeded: {codes.DeadlineExceeded,
		"the request's deadline passed before it completed", slog.LevelWarn},
	ReasonCancelled: {codes.Canceled,
		"the request was cancelled by the caller", slog.LevelInfo},
	ReasonInternal: {codes.Internal,
		"internal error: the operator has the details in the service log", slog.LevelError},
	ReasonRateLimited: {codes.ResourceExhausted,
		"the caller is over one of the service's overload limits (ErrorInfo metadata \"limit\" names it), so nothing was done: retry after the RetryInfo delay", slog.LevelInfo},
	ReasonChunkTooSmall: {codes.InvalidArgument,
		"a SecureFile chunk other than the last was smaller than the minimum (ErrorInfo metadata \"min_chunk_bytes\"): nothing was stored; send larger chunks", slog.LevelInfo},
	ReasonStreamIdleTimeout: {codes.Aborted,
		"the SecureFile stream waited too long between two messages (ErrorInfo metadata \"idle_timeout\"), so it was aborted and nothing was stored: send the file again without pauses", slog.LevelInfo},
	ReasonAuditUnavailable: {codes.Unavailable,
		"the call's audit record could not be written, and every call must leave one: retry after the RetryInfo delay (a store with the same idempotency_key)", slog.LevelError},
	ReasonOrganisationNotAllowed: {codes.PermissionDenied,
		"the caller is not allowed to act for this organisation, so nothing was done: the operator lists each caller's organisations in the callers file", slog.LevelWarn},
	ReasonOperatorRoleRequired: {codes.PermissionDenied,
		"only callers with the operator role may use the RecoveryAdminService, so nothing was done: the operator adds \"roles\": [\"operator\"] to the caller's entry in the callers file", slog.LevelWarn},
	ReasonCallerNotAuthenticated: {codes.Unauthenticated,
		"no authenticated caller for this call: the operator has the details in the service log", slog.LevelError},
}

// failure is an outcome this package decided on. It carries the reason and
// the details a caller can act on; cause is the full error, for the log only.
type failure struct {
	reason     recoveryv1.ErrorReason
	metadata   map[string]string
	violations []*errdetails.BadRequest_FieldViolation
	retryAfter time.Duration
	cause      error
}

func (f *failure) Error() string {
	name := strings.ToLower(auth.ReasonName(f.reason))
	if f.cause == nil {
		return name
	}
	return name + ": " + f.cause.Error()
}

func (f *failure) Unwrap() error { return f.cause }

// fail makes a failure with reason, keeping cause for the log.
func fail(reason recoveryv1.ErrorReason, cause error) *failure {
	return &failure{reason: reason, cause: cause}
}

// invalidField reports one bad request field. The reason follows the cause
// (PLAINTEXT_TOO_LARGE, INVALID_PUBLIC_KEY, else INVALID_REQUEST); the field
// violation's description is cause's text, which is ours or keycrypto's and
// names what is wrong without echoing secret material.
func invalidField(field string, cause error) *failure {
	reason := ReasonInvalidRequest
	switch {
	case errors.Is(cause, keycrypto.ErrPlaintextTooLarge):
		reason = ReasonPlaintextTooLarge
	case errors.Is(cause, keycrypto.ErrInvalidPublicKey):
		reason = ReasonInvalidPublicKey
	}
	return &failure{
		reason: reason,
		violations: []*errdetails.BadRequest_FieldViolation{{
			Field:       field,
			Description: cause.Error(),
			Reason:      auth.ReasonName(reason),
		}},
		cause: cause,
	}
}

// registryFailure marks an unexpected registry error (a database that does
// not answer) so it is reported as REGISTRY_UNAVAILABLE; the registry's
// sentinel errors and context errors pass through to the switch unchanged.
func registryFailure(err error) error {
	switch {
	case err == nil,
		errors.Is(err, registry.ErrNotFound),
		errors.Is(err, registry.ErrInvalidPageToken),
		errors.Is(err, registry.ErrReservationLost),
		errors.Is(err, registry.ErrInvalidArgument),
		errors.Is(err, registry.ErrDuplicate),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded):
		return err
	}
	var f *failure
	if errors.As(err, &f) {
		return err
	}
	return fail(ReasonRegistryUnavailable, err)
}

// classify is the single switch from every typed error the service meets
// (its own, upstream's, the registry's, keycrypto's, the context's) to a
// failure with a reason.
func classify(err error) *failure {
	if f, ok := errors.AsType[*failure](err); ok {
		return f
	}
	switch {
	case errors.Is(err, context.Canceled):
		return fail(ReasonCancelled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fail(ReasonDeadlineExceeded, err)
	}
	if ue, ok := errors.AsType[*upstream.Error](err); ok {
		return classifyUpstream(ue, err)
	}
	if r, ok := errors.AsType[*rejectedRequest](err); ok {
		return r.f
	}
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return fail(ReasonKeyNotFound, err)
	case errors.Is(err, registry.ErrInvalidArgument), errors.Is(err, registry.ErrDuplicate):
		// Requests are checked before they reach the registry, so either
		// is a fault of this service, not of the caller.
		return fail(ReasonInternal, err)
	case errors.Is(err, registry.ErrInvalidPageToken):
		f := invalidField("page_token", errors.New("not a page token this service issued"))
		f.reason, f.violations[0].Reason, f.cause = ReasonInvalidPageToken, auth.ReasonName(ReasonInvalidPageToken), err
		return f
	case errors.Is(err, keycrypto.ErrInvalidPublicKey):
		return invalidField("public_key_hex", err)
	case errors.Is(err, keycrypto.ErrPlaintextTooLarge), errors.Is(err, keycrypto.ErrEmptyPlaintext):
		return invalidField("plaintext", err)
	case errors.Is(err, keycrypto.ErrInvalidChecksum):
		return invalidField("sealed.checksum_sha256", err)
	case errors.Is(err, keycrypto.ErrSignatureInvalid), errors.Is(err, keycrypto.ErrBindingMismatch):
		return fail(ReasonEnclaveSignatureInvalid, err)
	case errors.Is(err, keycrypto.ErrNoVerificationKey), errors.Is(err, keycrypto.ErrInvalidJWKS):
		return fail(ReasonVerificationKeysUnavailable, err)
	}
	if r, ok := errors.AsType[*auth.Refusal](err); ok {
		// The refusal's reason and metadata (the customer id refused) are
		// what the auth package decided; its code and message come from
		// reasonSpecs like every other reason's.
		return &failure{reason: r.Reason, metadata: r.Metadata, cause: err}
	}
	// Any other gRPC status reaching here comes from the transport
	// (stream.Recv when the caller goes away).
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Canceled:
			return fail(ReasonCancelled, err)
		case codes.DeadlineExceeded:
			return fail(ReasonDeadlineExceeded, err)
		}
	}
	return fail(ReasonInternal, err)
}

// classifyUpstream maps the adapter's error kinds. Never the upstream's
// message text: only its field names reach the caller.
func classifyUpstream(ue *upstream.Error, err error) *failure {
	switch ue.Kind {
	case upstream.KindInvalid:
		f := fail(ReasonUpstreamRejectedRequest, err)
		if len(ue.Fields) > 0 {
			names := make([]string, 0, len(ue.Fields))
			for name := range ue.Fields {
				names = append(names, name)
			}
			slices.Sort(names)
			f.metadata = map[string]string{"upstream_fields": strings.Join(names, ",")}
		}
		return f
	case upstream.KindUnauthenticated, upstream.KindForbidden:
		return fail(ReasonUpstreamCredentialsRejected, err)
	case upstream.KindNotFound:
		return fail(ReasonKeyNotFoundUpstream, err)
	case upstream.KindAlreadyAssigned:
		return fail(ReasonAssignedElsewhere, err)
	case upstream.KindTooLarge:
		return fail(ReasonFileTooLarge, err)
	case upstream.KindRateLimited:
		f := fail(ReasonUpstreamRateLimited, err)
		f.retryAfter = ue.RetryAfter
		if f.retryAfter <= 0 {
			f.retryAfter = time.Second
		}
		return f
	case upstream.KindUnavailable:
		// Every refusal says when to retry: the upstream's Retry-After (an
		// open circuit breaker's remaining time), else a second.
		f := fail(ReasonUpstreamUnavailable, err)
		f.retryAfter = cmp.Or(ue.RetryAfter, time.Second)
		return f
	default: // KindUnsupportedMedia, KindProtocol, KindUnknown
		return fail(ReasonUpstreamContractMismatch, err)
	}
}

// statusFromError turns err into the status the caller receives, logging the
// full error and counting it. Every handler returns its errors through here.
func (s *Server) statusFromError(ctx context.Context, rpc string, err error) error {
	f := classify(err)
	spec, ok := reasonSpecs[f.reason]
	if !ok {
		// A reason with no row is a defect of this package; the caller
		// still gets a well-formed INTERNAL, never an unknown reason.
		f.reason, spec = ReasonInternal, reasonSpecs[ReasonInternal]
	}
	reason := auth.ReasonName(f.reason)
	s.log.LogAttrs(ctx, spec.level, "request failed",
		slog.String("rpc", rpc),
		slog.String("code", spec.code.String()),
		slog.String("reason", reason),
		slog.String("error", err.Error()))
	s.metrics.errors.Add(ctx, 1, metric.WithAttributes(
		attribute.String("rpc", rpc),
		attribute.String("code", spec.code.String()),
		attribute.String("reason", reason)))
	return buildStatus(spec, f)
}

// buildStatus assembles the status with its google.rpc details.
func buildStatus(spec reasonSpec, f *failure) error {
	st := status.New(spec.code, spec.message)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason:   auth.ReasonName(f.reason),
		Domain:   ErrorDomain,
		Metadata: f.metadata,
	}}
	if len(f.violations) > 0 {
		details = append(details, &errdetails.BadRequest{FieldViolations: f.violations})
	}
	if f.retryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(f.retryAfter)})
	}
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		// Only reachable if a detail cannot be marshalled; the bare
		// status still carries the right code and message.
		return st.Err()
	}
	return withDetails.Err()
}

// Overload limits, the ErrorInfo metadata "limit" of a RATE_LIMITED status.
const (
	// LimitRate is the per-caller token bucket (calls per second).
	LimitRate = "rate"
	// LimitConcurrentCalls is the per-caller cap on calls in flight.
	LimitConcurrentCalls = "concurrent_calls"
	// LimitConcurrentFiles is the global cap on SecureFile streams in flight.
	LimitConcurrentFiles = "concurrent_files"
	// LimitQueuedCalls is the per-caller bound on calls waiting for
	// admission while --max-active-calls calls are active.
	LimitQueuedCalls = "queued_calls"
)

// RateLimitedStatus is the status of a call refused by one of recoveryd's
// overload limits (see the Limit constants) before any work was done:
// RESOURCE_EXHAUSTED, reason RATE_LIMITED, and a RetryInfo of retryAfter so
// that well-behaved clients back off instead of retrying at once. It lives
// here, beside every other reason, so the code and message stay in the one
// table; recoveryd's overload interceptors call it.
func RateLimitedStatus(limit string, retryAfter time.Duration) error {
	f := &failure{reason: ReasonRateLimited, metadata: map[string]string{"limit": limit}, retryAfter: retryAfter}
	return buildStatus(reasonSpecs[ReasonRateLimited], f)
}

// StatusFromRefusal is the status of a call an authorization check refused
// (an *auth.Refusal) before it reached a handler, with the code and message
// of the one table; recoveryd's operator interceptor calls it.
func StatusFromRefusal(err error) error {
	f := classify(err)
	return buildStatus(reasonSpecs[f.reason], f)
}

// AuditUnavailableStatus is the status of a call whose audit record could
// not be written in production: UNAVAILABLE, reason AUDIT_UNAVAILABLE, with
// retryAfter as its RetryInfo. recoveryd's audit interceptor calls it.
func AuditUnavailableStatus(retryAfter time.Duration) error {
	f := &failure{reason: ReasonAuditUnavailable, retryAfter: retryAfter}
	return buildStatus(reasonSpecs[ReasonAuditUnavailable], f)
}

// StatusFromValidation converts the error of protovalidate's Validate into
// the status a caller gets: InvalidArgument with one BadRequest field
// violation per rule violation (field path such as
// "organisation.customer_id", the rule as reason, a readable description)
// and ErrorInfo reason INVALID_REQUEST, or PLAINTEXT_TOO_LARGE when plaintext
// exceeds its max_len. recoveryd's validation interceptor calls it. Any other
// error (a rule that failed to compile or evaluate) is Internal: the caller
// cannot fix it.
func StatusFromValidation(err error) error {
	if err == nil {
		return nil
	}
	verr, ok := errors.AsType[*protovalidate.ValidationError](err)
	if !ok {
		return buildStatus(reasonSpecs[ReasonInternal], fail(ReasonInternal, err))
	}
	f := &failure{reason: ReasonInvalidRequest, cause: err}
	for _, v := range verr.Violations {
		field := protovalidate.FieldPathString(v.Proto.GetField())
		rule := v.Proto.GetRuleId()
		if field == "plaintext" && rule == "bytes.max_len" {
			f.reason = ReasonPlaintextTooLarge
		}
		desc := v.Proto.GetMessage()
		if desc == "" {
			desc = "violates rule " + rule
		}
		f.violations = append(f.violations, &errdetails.BadRequest_FieldViolation{
			Field:       field,
			Description: fmt.Sprintf("%s (rule %s)", desc, rule),
			Reason:      ruleReason(rule),
		})
	}
	return &rejectedRequest{f: f, st: buildStatus(reasonSpecs[f.reason], f)}
}

// rejectedRequest is StatusFromValidation's status for an invalid message.
// The interceptor hands it to gRPC as it is; a SecureFile handler that
// receives it from stream.Recv (the chunk after the header may be the
// invalid message) classifies it as the rejection it is, not as INTERNAL.
type rejectedRequest struct {
	f  *failure
	st error
}

func (r *rejectedRequest) Error() string { return r.st.Error() }

// GRPCStatus is the status callers get.
func (r *rejectedRequest) GRPCStatus() *status.Status { return status.Convert(r.st) }

// ruleReason turns a protovalidate rule id such as "string.pattern" into the
// UPPER_SNAKE_CASE form FieldViolation.reason asks for ("STRING_PATTERN").
func ruleReason(rule string) string {
	var b strings.Builder
	for _, r := range rule {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "INVALID"
	}
	return b.String()
}
