package sandbox_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestLoadTokensFile reads testdata/tokens.json and serves with it: types
// default to api_key, pulled_by_* bind the credential, expiry and scope
// are enforced.
func TestLoadTokensFile(t *testing.T) {
	tokens, err := sandbox.LoadTokensFile(filepath.Join("testdata", "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 4 || tokens[2].Type != "api_key" || tokens[1].Type != "user_credentials" ||
		!tokens[1].ExpiresAt.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("tokens %+v", tokens)
	}
	h := start(t, sandbox.Config{Tokens: tokens, Now: func() time.Time { return time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC) }})
	a := h.postJSON(sandbox.PathAssignKey, "ci-user-secret", assignRequest("u", "c", "pulled_by_id", "pulled_by_type"))
	var got assigned
	decodeStrict(t, a, &got)
	if !strings.Contains(got.SignedPayload, `"pulled_by_id":"ci-user","pulled_by_type":"user_credentials"`) {
		t.Fatalf("pulled_by_* not bound from the credential: %s", got.SignedPayload)
	}
	for token, want := range map[string]int{"ci-expired-secret": 401, "ci-reader-secret": 403, sandbox.DevPartnerToken: 401} {
		if resp := h.postJSON(sandbox.PathAssignKey, token, assignRequest("v", "c")); resp.status != want {
			t.Errorf("token %s: status %d, want %d", token[:6], resp.status, want)
		}
	}
	if resp := h.postJSON(sandbox.PathAssignKey, "ci-partner-secret", assignRequest("w", "c")); resp.status != http.StatusOK {
		t.Errorf("ci-partner: %d", resp.status)
	}
}

// TestLoadTokensFileInvalid: errors say what is wrong and never echo a
// secret.
func TestLoadTokensFileInvalid(t *testing.T) {
	cases := map[string]string{
		"not JSON":       `{"tokens": [`,
		"wrong shape":    `{"keys": []}`,
		"no tokens":      `{"tokens": []}`,
		"no id":          `{"tokens": [{"token": "s3cret-value"}]}`,
		"empty secret":   `{"tokens": [{"id": "a", "token": ""}]}`,
		"duplicate id":   `{"tokens": [{"id": "a", "token": "s3cret-value"}, {"id": "a", "token": "other-s3cret"}]}`,
		"shared secret":  `{"tokens": [{"id": "a", "token": "s3cret-value"}, {"id": "b", "token": "s3cret-value"}]}`,
		"unknown type":   `{"tokens": [{"id": "a", "token": "s3cret-value", "type": "jwt"}]}`,
		"bad expires_at": `{"tokens": [{"id": "a", "token": "s3cret-value", "expires_at": "tomorrow"}]}`,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := sandbox.LoadTokensFile(path)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error echoes a secret: %v", err)
			}
		})
	}
	if _, err := sandbox.LoadTokensFile(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("missing file accepted")
	}
}
