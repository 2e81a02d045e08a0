package auth_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
// ErrorInfo of the API's domain with reason.
func wantRefusal(t *testing.T, err error, code codes.Code, reason string) *errdetails.ErrorInfo {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v: code %v, want %v", err, status.Code(err), code)
	}
	info := errorInfo(err)
	if info == nil || info.GetReason() != reason || info.GetDomain() != auth.ErrorDomain {
		t.Fatalf("error %v: ErrorInfo %v, want reason %s in domain %s", err, info, reason, auth.ErrorDomain)
	}
	return info
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
		wantCode   codes.Code
		wantReason string
	}{
		{"enforced, listed organisation", auth.Enforced, &walletAPI, "org-2", codes.OK, ""},
		{"enforced, other organisation", auth.Enforced, &walletAPI, "org-3", codes.PermissionDenied, auth.ReasonOrganisationNotAllowed},
		{"enforced, empty customer id", auth.Enforced, &walletAPI, "", codes.PermissionDenied, auth.ReasonOrganisationNotAllowed},
		{"enforced, all organisations", auth.Enforced, &support, "org-99", codes.OK, ""},
		{"enforced, all organisations, empty customer id", auth.Enforced, &support, "", codes.PermissionDenied, auth.ReasonOrganisationNotAllowed},
		{"enforced, no caller", auth.Enforced, nil, "org-1", codes.Unauthenticated, auth.ReasonNotAuthenticated},
		{"unknown mode acts enforced", auth.Mode(42), nil, "org-1", codes.Unauthenticated, auth.ReasonNotAuthenticated},
		{"disabled, no caller", auth.Disabled, nil, "org-1", codes.OK, ""},
		{"disabled, caller still held to its organisations", auth.Disabled, &walletAPI, "org-3", codes.PermissionDenied, auth.ReasonOrganisationNotAllowed},
		{"disabled, caller's organisation", auth.Disabled, &walletAPI, "org-1", codes.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.caller != nil {
				ctx = auth.WithCaller(ctx, *tt.caller)
			}
			err := tt.mode.Authorize(ctx, tt.customerID)
			if tt.wantCode == codes.OK {
				if err != nil {
					t.Fatalf("Authorize: %v", err)
				}
				return
			}
			info := wantRefusal(t, err, tt.wantCode, tt.wantReason)
			if tt.wantReason == auth.ReasonOrganisationNotAllowed {
				if info.GetMetadata()["customer_id"] != tt.customerID || info.GetMetadata()["caller"] != tt.caller.Name {
					t.Errorf("ErrorInfo metadata %v, want customer_id %q and caller %q", info.GetMetadata(), tt.customerID, tt.caller.Name)
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
				wantRefusal(t, err, tt.wantCode, auth.ReasonNotAuthenticated)
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

func TestAuthorizeErrorsAreStatuses(t *testing.T) {
	err := auth.Enforced.Authorize(auth.WithCaller(context.Background(), auth.Caller{Name: "c", Organisations: []string{"org-1"}}), "org-2")
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		t.Fatalf("%T is not a gRPC status error", err)
	}
	if se.GRPCStatus().Message() != "caller is not allowed to act for this organisation" {
		t.Fatalf("message %q is not the fixed one", se.GRPCStatus().Message())
	}
}
