package auth_test

import (
	"context"
	"slices"
	"testing"

	"github.com/walletprovider/recoveryservice/service/auth"
)

func TestCallerMayAccess(t *testing.T) {
	listed := auth.Caller{Name: "wallet-api", Organisations: []string{"org-1", "org-2"}}
	all := auth.Caller{Name: "support-tool", Organisations: []string{"org-1", "*"}}
	none := auth.Caller{Name: "nobody"}
	tests := []struct {
		caller     auth.Caller
		customerID string
		want       bool
	}{
		{listed, "org-1", true},
		{listed, "org-2", true},
		{listed, "org-3", false},
		{listed, "ORG-1", false},
		{listed, "org-1 ", false},
		{listed, "*", false},
		{listed, "", false},
		{all, "org-1", true},
		{all, "anything-else", true},
		{all, "", false},
		{none, "org-1", false},
	}
	for _, tt := range tests {
		if got := tt.caller.MayAccess(tt.customerID); got != tt.want {
			t.Errorf("%s.MayAccess(%q) = %v, want %v", tt.caller.Name, tt.customerID, got, tt.want)
		}
	}
}

func TestCallerOrganisationFilter(t *testing.T) {
	tests := []struct {
		name    string
		orgs    []string
		want    []string
		wantNil bool
	}{
		{"listed", []string{"org-1", "org-2"}, []string{"org-1", "org-2"}, false},
		{"all", []string{"*"}, nil, true},
		{"all among others", []string{"org-1", "*"}, nil, true},
		{"none", nil, []string{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := auth.Caller{Name: "c", Organisations: tt.orgs}
			got := c.OrganisationFilter()
			if (got == nil) != tt.wantNil || !slices.Equal(got, tt.want) {
				t.Fatalf("OrganisationFilter() = %#v, want %#v (nil: %v)", got, tt.want, tt.wantNil)
			}
			if len(got) > 0 {
				got[0] = "mutated"
				if c.Organisations[0] == "mutated" {
					t.Fatal("OrganisationFilter returned the caller's own slice")
				}
			}
		})
	}
}

func TestCallerContext(t *testing.T) {
	ctx := context.Background()
	if _, ok := auth.CallerFrom(ctx); ok {
		t.Fatal("CallerFrom found a caller in an empty context")
	}
	if name := auth.CallerName(ctx); name != "" {
		t.Fatalf("CallerName of an empty context = %q", name)
	}
	want := auth.Caller{Name: "wallet-api", Organisations: []string{"org-1"}}
	ctx = auth.WithCaller(ctx, want)
	got, ok := auth.CallerFrom(ctx)
	if !ok || got.Name != want.Name || !slices.Equal(got.Organisations, want.Organisations) {
		t.Fatalf("CallerFrom = %+v, %v; want %+v", got, ok, want)
	}
	if name := auth.CallerName(ctx); name != "wallet-api" {
		t.Fatalf("CallerName = %q", name)
	}
}
