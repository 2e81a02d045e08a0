package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// Development tokens accepted when Config.Tokens is empty. They exist so a
// new user can walk the contract with curl; a tokens file replaces them.
const (
	// DevPartnerToken has the partner-endpoint scope.
	DevPartnerToken = "sandbox-partner-token"
	// DevNoScopeToken authenticates but has no scope (the 403 row).
	DevNoScopeToken = "sandbox-no-scope-token"
)

// Token types, as the upstream reports them in pulled_by_type.
const (
	TokenTypeAPIKey          = "api_key"
	TokenTypeUserCredentials = "user_credentials"
)

// Token is an API key the emulator accepts.
type Token struct {
	// ID names the credential; it is what sign_with's pulled_by_id binds and
	// what the logs show (never the secret).
	ID string
	// Secret is the bearer token itself.
	Secret string
	// Type is TokenTypeAPIKey (default) or TokenTypeUserCredentials.
	Type string
	// Scopes granted; PartnerScope opens the partner endpoints.
	Scopes []string
	// ExpiresAt, when set, is the instant from which the token is rejected.
	ExpiresAt time.Time
}

// DevTokens returns the two development tokens.
func DevTokens() []Token {
	return []Token{
		{ID: "dev-partner", Secret: DevPartnerToken, Type: TokenTypeAPIKey, Scopes: []string{PartnerScope}},
		{ID: "dev-no-scope", Secret: DevNoScopeToken, Type: TokenTypeAPIKey},
	}
}

// tokensFile is the JSON shape of a tokens file.
type tokensFile struct {
	Tokens []struct {
		ID        string    `json:"id"`
		Token     string    `json:"token"`
		Type      string    `json:"type"`
		Scopes    []string  `json:"scopes"`
		ExpiresAt time.Time `json:"expires_at"`
	} `json:"tokens"`
}

// LoadTokensFile reads {"tokens":[{"id","token","type","scopes":[…],"expires_at"}]}.
// Errors name the entry by index or id, never by its secret.
func LoadTokensFile(path string) ([]Token, error) {
	data, err := os.ReadFile(path) //nolint:gosec // G304: the path is the operator's configuration, not a caller's input
	if err != nil {
		return nil, fmt.Errorf("sandbox: reading tokens file: %w", err)
	}
	var f tokensFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		// NOTE: json errors can quote input; report the position only.
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, fmt.Errorf("sandbox: tokens file %s is not valid JSON (offset %d)", path, syn.Offset)
		}
		return nil, fmt.Errorf("sandbox: tokens file %s does not have the shape {\"tokens\":[{\"id\",\"token\",\"type\",\"scopes\",\"expires_at\"}]}", path)
	}
	if len(f.Tokens) == 0 {
		return nil, fmt.Errorf("sandbox: tokens file %s lists no tokens", path)
	}
	tokens := make([]Token, 0, len(f.Tokens))
	for _, t := range f.Tokens {
		tokens = append(tokens, Token{ID: t.ID, Secret: t.Token, Type: t.Type, Scopes: t.Scopes, ExpiresAt: t.ExpiresAt})
	}
	if err := validateTokens(tokens); err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return tokens, nil
}

// validateTokens fills in default types and rejects entries that could not
// authenticate anyone or would be ambiguous.
func validateTokens(tokens []Token) error {
	ids := map[string]bool{}
	secrets := map[string]bool{}
	for i := range tokens {
		t := &tokens[i]
		if t.ID == "" {
			return fmt.Errorf("sandbox: token #%d has no id", i+1)
		}
		if t.Secret == "" {
			return fmt.Errorf("sandbox: token %q has an empty secret", t.ID)
		}
		if ids[t.ID] {
			return fmt.Errorf("sandbox: token id %q appears twice", t.ID)
		}
		if secrets[t.Secret] {
			return fmt.Errorf("sandbox: token %q reuses another token's secret", t.ID)
		}
		ids[t.ID], secrets[t.Secret] = true, true
		switch t.Type {
		case "":
			t.Type = TokenTypeAPIKey
		case TokenTypeAPIKey, TokenTypeUserCredentials:
		default:
			return fmt.Errorf("sandbox: token %q has type %q (want %s or %s)", t.ID, t.Type, TokenTypeAPIKey, TokenTypeUserCredentials)
		}
		t.Scopes = slices.Clone(t.Scopes)
	}
	return nil
}

// hasScope reports whether t grants scope.
func (t *Token) hasScope(scope string) bool {
	return slices.Contains(t.Scopes, scope)
}
