package sandbox_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestPartnerAuth covers the 401 and 403 rows on every partner endpoint:
// the check comes before the body is looked at, and nothing is stored.
func TestPartnerAuth(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	h := start(t, sandbox.Config{
		Now: func() time.Time { return now },
		Tokens: []sandbox.Token{
			{ID: "partner", Secret: "good-token", Scopes: []string{sandbox.PartnerScope}},
			{ID: "expired", Secret: "old-token", Scopes: []string{sandbox.PartnerScope}, ExpiresAt: now},
			{ID: "reader", Secret: "reader-token", Scopes: []string{"read"}},
		},
	})
	cases := []struct {
		name          string
		authorization string
		status        int
		errType       string
	}{
		{"no header", "", http.StatusUnauthorized, "unauthorized"},
		{"not bearer", "Basic Z29vZC10b2tlbjo=", http.StatusUnauthorized, "unauthorized"},
		{"empty bearer", "Bearer ", http.StatusUnauthorized, "unauthorized"},
		{"unknown token", "Bearer not-a-token", http.StatusUnauthorized, "unauthorized"},
		{"token prefix", "Bearer good-toke", http.StatusUnauthorized, "unauthorized"},
		{"expired token", "Bearer old-token", http.StatusUnauthorized, "unauthorized"},
		{"dev token not accepted with a tokens list", "Bearer " + sandbox.DevPartnerToken, http.StatusUnauthorized, "unauthorized"},
		{"no partner scope", "Bearer reader-token", http.StatusForbidden, "forbidden"},
	}
	for _, path := range []string{sandbox.PathAssignKey, sandbox.PathSecureData, sandbox.PathSecureFile} {
		for _, tc := range cases {
			t.Run(strings.TrimPrefix(path, "/v1/partner/")+"/"+tc.name, func(t *testing.T) {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.http.URL+path, bytes.NewReader([]byte(`{}`)))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				if tc.authorization != "" {
					req.Header.Set("Authorization", tc.authorization)
				}
				resp := h.send(req)
				if resp.status != tc.status {
					t.Fatalf("status %d, want %d: %s", resp.status, tc.status, resp.body)
				}
				if e := resp.errorBody(t); e.Error != tc.errType {
					t.Errorf("error type %q, want %q", e.Error, tc.errType)
				}
				if tc.status == http.StatusUnauthorized && !strings.HasPrefix(resp.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without a Bearer challenge: %q", resp.header.Get("WWW-Authenticate"))
				}
			})
		}
	}
	// The valid token gets past auth to validation (400, not 401/403).
	if resp := h.postJSON(sandbox.PathAssignKey, "good-token", `{}`); resp.status != http.StatusBadRequest {
		t.Fatalf("valid token: status %d: %s", resp.status, resp.body)
	}
	if n := len(h.inspect.Keys(t)); n != 0 {
		t.Fatalf("%d keys stored by rejected requests", n)
	}
}

// TestDevTokens checks the two development tokens accepted without a
// tokens list: one with the partner scope, one without.
func TestDevTokens(t *testing.T) {
	h := start(t, sandbox.Config{})
	if resp := h.postJSON(sandbox.PathAssignKey, sandbox.DevNoScopeToken, assignRequest("u", "c")); resp.status != http.StatusForbidden {
		t.Fatalf("no-scope dev token: status %d", resp.status)
	}
	h.assign(assignRequest("u", "c"))
}

// TestRateLimit covers the 429 row: per token, Retry-After in seconds, and
// allowed again once the bucket refills (on a fake clock).
func TestRateLimit(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	h := start(t, sandbox.Config{
		RateLimit: 0.5, // one request per two seconds
		Now:       func() time.Time { return now },
	})
	body := assignRequest("", "c") // invalid on purpose: rate limiting comes first
	if resp := h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, body); resp.status != http.StatusBadRequest {
		t.Fatalf("first request: status %d", resp.status)
	}
	resp := h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, body)
	if resp.status != http.StatusTooManyRequests {
		t.Fatalf("second request: status %d, want 429", resp.status)
	}
	if e := resp.errorBody(t); e.Error != "rate_limited" {
		t.Errorf("error type %q", e.Error)
	}
	if got := resp.header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After %q, want 2", got)
	}
	// Another token has its own bucket (it is then refused for its scope).
	if resp := h.postJSON(sandbox.PathAssignKey, sandbox.DevNoScopeToken, body); resp.status != http.StatusForbidden {
		t.Errorf("other token: status %d, want 403", resp.status)
	}
	now = now.Add(time.Second)
	if resp := h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, body); resp.status != http.StatusTooManyRequests || resp.header.Get("Retry-After") != "1" {
		t.Errorf("after 1s: status %d Retry-After %q, want 429 and 1", resp.status, resp.header.Get("Retry-After"))
	}
	now = now.Add(time.Second)
	if resp := h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, body); resp.status != http.StatusBadRequest {
		t.Errorf("after 2s: status %d, want the request through", resp.status)
	}
	// Inspection endpoints are not rate limited.
	for range 3 {
		h.inspect.Keys(t)
	}
}
