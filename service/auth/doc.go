// Package auth decides who is calling recoveryd and which organisations that
// caller may act for, so that recovery material is only ever assigned,
// stored or listed on behalf of a caller the operator named.
//
// # Authentication
//
// Callers are listed in a JSON file (recoveryd's --caller-tokens-file):
//
//	{"callers": [
//	  {"name": "wallet-api", "token_sha256": "<64 lowercase hex>", "organisations": ["org-1", "org-2"]},
//	  {"name": "support-tool", "token_sha256": "<64 lowercase hex>", "organisations": ["*"]}
//	]}
//
// The file stores only SHA-256 digests of the bearer tokens, must not be
// readable or writable by group or others, and is validated strictly (see
// LoadCallersFile). An Authenticator holds the current set and swaps it
// atomically on Reload (recoveryd calls it on SIGHUP, see WatchSIGHUP); an
// invalid new file leaves the old set in force.
//
// A call authenticates with either or both of:
//
//   - metadata "authorization: Bearer <token>": the token's SHA-256 is
//     compared, in constant time, with every entry of the file;
//   - a client certificate verified against --client-ca (mTLS): the caller
//     is the entry whose name the certificate carries (the rule is on
//     CallerSet.NamesInCertificate).
//
// When both are presented they must name the same caller. Every refusal is
// codes.Unauthenticated with a fixed message and a google.rpc.ErrorInfo
// reason (ReasonTokenMissing, ReasonTokenInvalid, ReasonCertUnknown,
// ReasonIdentityConflict); tokens are never echoed or logged.
//
// Health is always public; server reflection is public only when
// Config.PublicReflection is set (development).
//
// # Authorization
//
// Handlers call Mode.Authorize with the organisation (customer_id) a request
// acts for, and Mode.Scope to filter listings. The operators' service
// (recovery.v1.RecoveryAdminService) is guarded as a whole by
// OperatorUnaryInterceptor: a caller needs "roles": ["operator"] in its
// entry (Mode.AuthorizeOperator; without caller authentication, a loopback
// peer). Their refusals are a typed
// *Refusal, not a gRPC status: the service's one error mapping gives them
// their code and message. Mode's zero value is Enforced,
// so an unconfigured mode fails closed; Disabled is the explicit choice of a
// deployment without caller authentication, where a call without a caller is
// allowed and recorded with an empty caller name.
package auth
