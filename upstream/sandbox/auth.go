package sandbox

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"
)

// authenticator resolves bearer tokens to configured Tokens.
type authenticator struct {
	tokens []Token
	// digests[i] is SHA-256 of tokens[i].Secret: comparing fixed-size
	// digests in constant time does not leak a secret's length or prefix.
	digests [][sha256.Size]byte
}

func newAuthenticator(tokens []Token) *authenticator {
	a := &authenticator{tokens: tokens}
	for _, t := range tokens {
		a.digests = append(a.digests, sha256.Sum256([]byte(t.Secret)))
	}
	return a
}

// authenticate checks the request's bearer token: 401 when it is missing,
// unknown or expired; 403 when it lacks scope.
func (a *authenticator) authenticate(r *http.Request, scope string, now time.Time) (*Token, *apiError) {
	secret, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok {
		return nil, &apiError{Status: http.StatusUnauthorized, Type: errTypeUnauthorized,
			Message: "Missing bearer token: send Authorization: Bearer <token>"}
	}
	digest := sha256.Sum256([]byte(secret))
	var found *Token
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(digest[:], a.digests[i][:]) == 1 {
			found = &a.tokens[i]
		}
	}
	if found == nil {
		return nil, &apiError{Status: http.StatusUnauthorized, Type: errTypeUnauthorized, Message: "Invalid token"}
	}
	if !found.ExpiresAt.IsZero() && !now.Before(found.ExpiresAt) {
		return nil, &apiError{Status: http.StatusUnauthorized, Type: errTypeUnauthorized, Message: "Token expired"}
	}
	if !found.hasScope(scope) {
		return nil, &apiError{Status: http.StatusForbidden, Type: errTypeForbidden,
			Message: "Token lacks the " + scope + " scope"}
	}
	return found, nil
}

// bearerToken extracts the token of an "Authorization: Bearer <token>" value.
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
