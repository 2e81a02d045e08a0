package auth

import (
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every error this package
// returns; it is the API's domain, so callers see one domain for all
// recoveryd errors.
const ErrorDomain = "recovery.v1"

// Reasons of refused calls, from the contract's ErrorReason enum (the proto
// documents each for callers). The short names keep the call sites readable.
const (
	// ReasonTokenMissing: the call carried neither a bearer token nor a
	// client certificate.
	ReasonTokenMissing = recoveryv1.ErrorReason_ERROR_REASON_CALLER_TOKEN_MISSING
	// ReasonTokenInvalid: the authorization metadata is not
	// "Bearer <token>", or the token is not in the callers file.
	ReasonTokenInvalid = recoveryv1.ErrorReason_ERROR_REASON_CALLER_TOKEN_INVALID
	// ReasonCertUnknown: the client certificate names no caller in the
	// callers file, or was not verified against the client CA.
	ReasonCertUnknown = recoveryv1.ErrorReason_ERROR_REASON_CALLER_CERT_UNKNOWN
	// ReasonIdentityConflict: the credentials name more than one caller (a
	// token and a certificate of different callers, or a certificate whose
	// names match several entries).
	ReasonIdentityConflict = recoveryv1.ErrorReason_ERROR_REASON_CALLER_IDENTITY_CONFLICT
	// ReasonNotAuthenticated: a protected handler was reached with no
	// authenticated caller while authentication is enforced; the server is
	// mis-assembled, and the call is refused rather than run unattributed.
	ReasonNotAuthenticated = recoveryv1.ErrorReason_ERROR_REASON_CALLER_NOT_AUTHENTICATED
	// ReasonOrganisationNotAllowed: the caller is not listed for the
	// organisation the request acts for.
	ReasonOrganisationNotAllowed = recoveryv1.ErrorReason_ERROR_REASON_ORGANISATION_NOT_ALLOWED
	// ReasonOperatorRoleRequired: a RecoveryAdminService call from a caller
	// without the operator role (or, without caller authentication, from a
	// peer off the loopback interface).
	ReasonOperatorRoleRequired = recoveryv1.ErrorReason_ERROR_REASON_OPERATOR_ROLE_REQUIRED
)

// reasonPrefix is what the enum's value names carry and the wire does not.
const reasonPrefix = "ERROR_REASON_"

// ReasonName is r as google.rpc.ErrorInfo.reason carries it: the value's
// name without the ERROR_REASON_ prefix (ERROR_REASON_KEY_NOT_FOUND travels
// as "KEY_NOT_FOUND"), which is what callers matched on before the enum was
// published. It lives here, the lowest package that builds an ErrorInfo, so
// that service and service/auth apply the one rule.
func ReasonName(r recoveryv1.ErrorReason) string {
	return strings.TrimPrefix(r.String(), reasonPrefix)
}

// Refusal is Mode.Authorize's and Mode.Scope's answer when the call may not
// go on: ORGANISATION_NOT_ALLOWED, or CALLER_NOT_AUTHENTICATED. It is a
// plain typed error, not a gRPC status, so the handler's single error
// mapping (service/errors.go) gives it its code and message; match it with
// errors.As.
type Refusal struct {
	// Reason is why the call was refused.
	Reason recoveryv1.ErrorReason
	// Metadata is what the caller may be told about the refusal (the
	// customer_id refused, the caller's name); never a credential.
	Metadata map[string]string
}

// Error names the reason; the metadata is for the status details, not for
// error text that may be logged far from the call.
func (r *Refusal) Error() string {
	return "auth: call refused: " + ReasonName(r.Reason)
}

// Fixed, safe status messages of the authentication interceptor: they tell
// a person what to change and never carry anything the caller sent.
const (
	msgTokenMissing     = "caller authentication required: send metadata \"authorization: Bearer <token>\" or a client certificate"
	msgTokenMalformed   = "authorization metadata must be exactly one value of the form \"Bearer <token>\""
	msgTokenInvalid     = "caller token not recognised"
	msgCertUnverified   = "client certificate was not verified against the server's client CA"
	msgCertUnknown      = "client certificate names no known caller"
	msgIdentityConflict = "credentials name more than one caller: the token and the client certificate must belong to the same caller"
)

// refusal is an authentication failure: the reason it is logged and counted
// under and the message the caller sees.
//
// NOTE: the interceptor answers before any handler runs, so service's error
// mapping never sees these; their status is built here, and these four
// reasons (all Unauthenticated) are mapped nowhere else.
type refusal struct {
	reason  recoveryv1.ErrorReason
	message string
}

// status converts the refusal into the gRPC status the caller sees.
func (r refusal) status() error {
	st := status.New(codes.Unauthenticated, r.message)
	detailed, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason: ReasonName(r.reason),
		Domain: ErrorDomain,
	})
	if err != nil {
		// NOTE: WithDetails fails only if the detail cannot be marshalled,
		// which a plain ErrorInfo always can; keep the code either way.
		return st.Err()
	}
	return detailed.Err()
}
