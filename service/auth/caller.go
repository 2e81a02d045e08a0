package auth

import (
	"context"
	"slices"
)

// AllOrganisations is the organisations entry that lets a caller act for
// every organisation (support tooling, the wallet provider's own back office).
const AllOrganisations = "*"

// Caller is an authenticated client of recoveryd: the name recorded with
// every assignment and backup it makes, and the organisations it may act for.
//
// Organisations is shared with the caller set it came from; treat it as
// read-only (OrganisationFilter returns a copy).
type Caller struct {
	// Name is the caller's name from the callers file.
	Name string
	// Organisations are the customer ids the caller may act for;
	// AllOrganisations means every one.
	Organisations []string
	// Limits overrides recoveryd's default overload limits for this caller.
	Limits Limits
	// Roles are the caller's roles beyond acting for its organisations
	// (RoleOperator); shared like Organisations, read-only.
	Roles []string
}

// RoleOperator is the role that admits a caller to the
// recovery.v1.RecoveryAdminService: it sees and settles every
// organisation's stuck assignments, whatever its organisations list.
const RoleOperator = "operator"

// knownRoles are the roles a callers file may name.
var knownRoles = []string{RoleOperator}

// HasRole reports whether the caller has role.
func (c Caller) HasRole(role string) bool {
	return slices.Contains(c.Roles, role)
}

// Limits are one caller's overload limits from the callers file. A nil
// field leaves recoveryd's default (its --rate-limit, --rate-burst and
// --max-concurrent-calls flags) in force for that caller.
type Limits struct {
	// RateLimit is the token bucket's refill in calls per second; 0 means
	// unlimited.
	RateLimit *float64
	// RateBurst is the bucket's size: calls allowed at once after a quiet
	// spell. It is set whenever RateLimit is above 0.
	RateBurst *int
	// MaxConcurrentCalls caps the caller's calls in flight; 0 means
	// unlimited.
	MaxConcurrentCalls *int
}

// MayAccess reports whether the caller may act for the organisation
// customerID. An empty customerID names no organisation and is never
// allowed, so a handler that forgot to pass the id fails closed.
func (c Caller) MayAccess(customerID string) bool {
	if customerID == "" {
		return false
	}
	for _, org := range c.Organisations {
		if org == AllOrganisations || org == customerID {
			return true
		}
	}
	return false
}

// OrganisationFilter is what ListKeys and ListBackups restrict their results
// to for this caller: nil when the caller may see every organisation, the
// caller's organisations otherwise. A caller with no organisations gets an
// empty, non-nil slice, which must filter out everything.
func (c Caller) OrganisationFilter() []string {
	if slices.Contains(c.Organisations, AllOrganisations) {
		return nil
	}
	if c.Organisations == nil {
		return []string{}
	}
	return slices.Clone(c.Organisations)
}

// callerKey is the context key of the authenticated Caller.
type callerKey struct{}

// WithCaller returns ctx carrying the authenticated caller. The
// authentication interceptor sets it; tests of handlers use it to stand in
// for an authenticated call.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller that authenticated the call ctx belongs to,
// and false when there is none (caller authentication is off, or the method
// is public).
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// CallerName is the name to record with an assignment or backup made in
// ctx: the authenticated caller's name, or "" when there is none.
func CallerName(ctx context.Context) string {
	c, _ := CallerFrom(ctx)
	return c.Name
}
