package auth

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every error this package
// returns; it is the API's domain, so callers see one domain for all
// recoveryd errors.
const ErrorDomain = "recovery.v1"

// Reasons in the google.rpc.ErrorInfo of refused calls. They are part of the
// API: callers act on them, so they never change.
const (
	// ReasonTokenMissing: the call carried neither a bearer token nor a
	// client certificate.
	ReasonTokenMissing = "CALLER_TOKEN_MISSING"
	// ReasonTokenInvalid: the authorization metadata is not
	// "Bearer <token>", or the token is not in the callers file.
	ReasonTokenInvalid = "CALLER_TOKEN_INVALID"
	// ReasonCertUnknown: the client certificate names no caller in the
	// callers file, or was not verified against the client CA.
	ReasonCertUnknown = "CALLER_CERT_UNKNOWN"
	// ReasonIdentityConflict: the credentials name more than one caller (a
	// token and a certificate of different callers, or a certificate whose
	// names match several entries).
	ReasonIdentityConflict = "CALLER_IDENTITY_CONFLICT"
	// ReasonNotAuthenticated: a protected handler was reached with no
	// authenticated caller while authentication is enforced; the server is
	// mis-assembled, and the call is refused rather than run unattributed.
	ReasonNotAuthenticated = "CALLER_NOT_AUTHENTICATED"
	// ReasonOrganisationNotAllowed: the caller is not listed for the
	// organisation the request acts for.
	ReasonOrganisationNotAllowed = "ORGANISATION_NOT_ALLOWED"
)

// Fixed, safe status messages: they tell a person what to change and never
// carry anything the caller sent.
const (
	msgTokenMissing     = "caller authentication required: send metadata \"authorization: Bearer <token>\" or a client certificate"
	msgTokenMalformed   = "authorization metadata must be exactly one value of the form \"Bearer <token>\""
	msgTokenInvalid     = "caller token not recognised"
	msgCertUnverified   = "client certificate was not verified against the server's client CA"
	msgCertUnknown      = "client certificate names no known caller"
	msgIdentityConflict = "credentials name more than one caller: the token and the client certificate must belong to the same caller"
	msgNotAuthenticated = "no authenticated caller for this call"
	msgOrgNotAllowed    = "caller is not allowed to act for this organisation"
)

// refusal is an authentication failure: the status the caller sees and the
// reason it is logged and counted under.
type refusal struct {
	reason  string
	message string
}

// status converts the refusal into the gRPC status the caller sees.
func (r refusal) status() error {
	return withInfo(codes.Unauthenticated, r.message, r.reason, nil)
}

// withInfo builds a status carrying an ErrorInfo with reason and metadata.
func withInfo(code codes.Code, message, reason string, metadata map[string]string) error {
	st := status.New(code, message)
	detailed, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   reason,
		Domain:   ErrorDomain,
		Metadata: metadata,
	})
	if err != nil {
		// NOTE: WithDetails fails only if the detail cannot be marshalled,
		// which a plain ErrorInfo always can; keep the code either way.
		return st.Err()
	}
	return detailed.Err()
}
