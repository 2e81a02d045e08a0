package auth

import (
	"context"
	"log/slog"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// Mode is how handlers treat a call that carries no authenticated caller.
// Its zero value is Enforced, so a handler whose mode was never set fails
// closed.
type Mode int

const (
	// Enforced means every protected call must carry an authenticated caller
	// (the authentication interceptor guarantees it); a call without one is
	// refused with a *Refusal, ReasonNotAuthenticated.
	Enforced Mode = iota
	// Disabled means caller authentication is off (no callers file configured).
	// A call without a caller is allowed for every organisation and is
	// recorded with an empty caller name. A call that does carry a caller is
	// still held to the caller's organisations.
	Disabled
)

// String names the mode, for logs and configuration dumps.
func (m Mode) String() string {
	if m == Disabled {
		return "disabled"
	}
	return "enforced"
}

// Authorize reports whether the call in ctx may act for the organisation
// customerID (the request's organisation.customer_id, or the customer id of
// the key or backup it touches). It returns nil when allowed, otherwise a
// *Refusal: ReasonOrganisationNotAllowed with the customer id and the
// caller's name in its metadata, or ReasonNotAuthenticated when the mode is
// Enforced and ctx has no caller. Handlers call it before any upstream call
// or registry write.
func (m Mode) Authorize(ctx context.Context, customerID string) error {
	caller, ok := CallerFrom(ctx)
	if !ok {
		if m == Disabled {
			return nil
		}
		return m.notAuthenticated(ctx)
	}
	if caller.MayAccess(customerID) {
		instruments.decision(ctx, stageAuthorize, outcomeAllowed, recoveryv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
		return nil
	}
	instruments.decision(ctx, stageAuthorize, outcomeDenied, ReasonOrganisationNotAllowed)
	return &Refusal{Reason: ReasonOrganisationNotAllowed, Metadata: map[string]string{
		"customer_id": customerID,
		"caller":      caller.Name,
	}}
}

// Scope is the organisation filter for listings (ListKeys, ListBackups)
// made by the call in ctx: nil means every organisation, otherwise only the
// listed ones (possibly none). With Disabled and no caller it is nil; with
// Enforced and no caller it is a *Refusal, ReasonNotAuthenticated. A listing that
// names one organisation should call Authorize for it instead.
func (m Mode) Scope(ctx context.Context) ([]string, error) {
	caller, ok := CallerFrom(ctx)
	if !ok {
		if m == Disabled {
			return nil, nil
		}
		return nil, m.notAuthenticated(ctx)
	}
	return caller.OrganisationFilter(), nil
}

// notAuthenticated refuses a protected call that reached a handler without
// a caller while authentication is enforced: the interceptor is missing or
// the method was wrongly made public. It is logged as an error because it is
// a defect of the server, not of the caller.
func (m Mode) notAuthenticated(ctx context.Context) error {
	instruments.decision(ctx, stageAuthorize, outcomeDenied, ReasonNotAuthenticated)
	slog.Default().LogAttrs(ctx, slog.LevelError,
		"protected call reached a handler without an authenticated caller; is the auth interceptor installed?")
	return &Refusal{Reason: ReasonNotAuthenticated}
}
