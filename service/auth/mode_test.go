package auth_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/auth"
)

// errorInfo returns the ErrorInfo detail of a status error, or nil.
func errorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// wantRefusal fails the test unless err is a status with code and an
// ErrorInfo of the API's domain with reason (by its wire name).
func wantRefusal(t *testing.T, err error, code codes.Code, reason recoveryv1.ErrorReason) *errdetails.ErrorInfo {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v: code %v, want %v", err, status.Code(err), code)
	}
	info := errorInfo(err)
	if info == nil || info.GetReason() != auth.ReasonName(reason) || info.GetDomain() != auth.ErrorDomain {
		t.Fatalf("error %v: ErrorInfo %v, want reason %s in domain %s", err, info, auth.ReasonName(reason), auth.ErrorDomain)
	}
	return info
}

// wantTypedRefusal fails the test unless err is (or wraps) a *auth.Refusal
// with reason, what handlers get from Authorize and Scope, and returns its
// metadata.
func wantTypedRefusal(t *testing.T, err error, reason recoveryv1.ErrorReason) map[string]string {
	t.Helper()
	refusal, ok := errors.AsType[*auth.Refusal](err)
	if !ok || refusal.Reason != reason {
		t.Fatalf("error %v (%T): want a *auth.Refusal with reason %v", err, err, reason)
	}
	return refusal.Metadata
}

func TestModeZeroValueIsEnforced(t *testing.T) {
	var m auth.Mode
	if m != auth.Enforced || m.String() != "enforced" || auth.Disabled.String() != "disabled" {
		t.Fatalf("zero Mode = %v, want Enforced", m)
	}
	var off *auth.Authenticator
	if off.Mode() != auth.Disabled {
		t.Fatal("a nil *Authenticator (authentication off) must mean Disabled")
	}
	if on := newAuthenticator(t, auth.Config{}, nil); on.Mode() != auth.Enforced {
		t.Fatal("an Authenticator must mean Enforced")
	}
}

func TestAuthorize(t *testing.T) {
	walletAPI := auth.Caller{Name: "wallet-api", Organisations: []string{"org-1", "org-2"}}
	support := auth.Caller{Name: "support-tool", Organisations: []string{"*"}}
	tests := []struct {
		name       string
		mode       auth.Mode
		caller     *auth.Caller
		customerID string
		wantReason recoveryv1.ErrorReason // ERROR_REASON_UNSPECIFIED = allowed
	}{
		{"enforced, listed organisation", auth.Enforced, &walletAPI, "org-2", 0},
		{"enforced, other organisation", auth.Enforced, &walletAPI, "org-3", auth.ReasonOrganisationNotAllowed},
		{"enforced, empty customer id", auth.Enforced, &walletAPI, "", auth.ReasonOrganisationNotAllowed},
		{"enforced, all organisations", auth.Enforced, &support, "org-99", 0},
		{"enforced, all organisations, empty customer id", auth.Enforced, &support, "", auth.ReasonOrganisationNotAllowed},
		{"enforced, no caller", auth.Enforced, nil, "org-1", auth.ReasonNotAuthenticated},
		{"unknown mode acts enforced", auth.Mode(42), nil, "org-1", auth.ReasonNotAuthenticated},
		{"disabled, no caller", auth.Disabled, nil, "org-1", 0},
		{"disabled, caller still held to its organisations", auth.Disabled, &walletAPI, "org-3", auth.ReasonOrganisationNotAllowed},
		{"disabled, caller's organisation", auth.Disabled, &walletAPI, "org-1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.caller != nil {
				ctx = auth.WithCaller(ctx, *tt.caller)
			}
			err := tt.mode.Authorize(ctx, tt.customerID)
			if tt.wantReason == recoveryv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
				if err != nil {
					t.Fatalf("Authorize: %v", err)
				}
				return
			}
			metadata := wantTypedRefusal(t, err, tt.wantReason)
			if tt.wantReason == auth.ReasonOrganisationNotAllowed {
				if metadata["customer_id"] != tt.customerID || metadata["caller"] != tt.caller.Name {
					t.Errorf("refusal metadata %v, want customer_id %q and caller %q", metadata, tt.customerID, tt.caller.Name)
				}
			}
		})
	}
}

func TestScope(t *testing.T) {
	walletAPI := auth.Caller{Name: "wallet-api", Organisations: []string{"org-1", "org-2"}}
	support := auth.Caller{Name: "support-tool", Organisations: []string{"*"}}
	empty := auth.Caller{Name: "empty"}
	tests := []struct {
		name     string
		mode     auth.Mode
		caller   *auth.Caller
		want     []string
		wantAll  bool
		wantCode codes.Code
	}{
		{"enforced, listed", auth.Enforced, &walletAPI, []string{"org-1", "org-2"}, false, codes.OK},
		{"enforced, all", auth.Enforced, &support, nil, true, codes.OK},
		{"enforced, none", auth.Enforced, &empty, []string{}, false, codes.OK},
		{"enforced, no caller", auth.Enforced, nil, nil, false, codes.Unauthenticated},
		{"disabled, no caller", auth.Disabled, nil, nil, true, codes.OK},
		{"disabled, listed", auth.Disabled, &walletAPI, []string{"org-1", "org-2"}, false, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.caller != nil {
				ctx = auth.WithCaller(ctx, *tt.caller)
			}
			got, err := tt.mode.Scope(ctx)
			if tt.wantCode != codes.OK {
				wantTypedRefusal(t, err, auth.ReasonNotAuthenticated)
				return
			}
			if err != nil {
				t.Fatalf("Scope: %v", err)
			}
			if (got == nil) != tt.wantAll || !slices.Equal(got, tt.want) {
				t.Fatalf("Scope = %#v, want %#v (all: %v)", got, tt.want, tt.wantAll)
			}
		})
	}
}

// TestAuthorizeRefusalsAreTypedNotStatuses: a handler's refusal reaches the
// service's one error mapping as a type it can match, not as a status it
// would have to take apart again; its text names the reason and nothing the
// caller sent.
func TestAuthorizeRefusalsAreTypedNotStatuses(t *testing.T) {
	err := auth.Enforced.Authorize(auth.WithCaller(context.Background(), auth.Caller{Name: "c", Organisations: []string{"org-1"}}), "org-2")
	if _, ok := status.FromError(err); ok {
		t.Fatalf("Authorize returned a gRPC status (%v); want a *auth.Refusal for the service to map", err)
	}
	wantTypedRefusal(t, fmt.Errorf("resolving the key: %w", err), auth.ReasonOrganisationNotAllowed)
	if got := err.Error(); got != "auth: call refused: ORGANISATION_NOT_ALLOWED" {
		t.Errorf("Error() = %q", got)
	}
}

// TestReasonName pins the wire rule for every value of the enum: the name
// without its ERROR_REASON_ prefix.
func TestReasonName(t *testing.T) {
	for number, name := range recoveryv1.ErrorReason_name {
		got := auth.ReasonName(recoveryv1.ErrorReason(number))
		if want, ok := strings.CutPrefix(name, "ERROR_REASON_"); !ok || got != want || got == "" {
			t.Errorf("ReasonName(%s) = %q, want %q", name, got, want)
		}
	}
	if got := auth.ReasonName(auth.ReasonTokenMissing); got != "CALLER_TOKEN_MISSING" {
		t.Errorf("ReasonName(ReasonTokenMissing) = %q", got)
	}
}
