package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"

	"google.golang.org/grpc/metadata"
)

// authorizationHeader is the metadata key of bearer tokens (RFC 6750 over
// gRPC metadata, lowercase as gRPC requires).
const authorizationHeader = "authorization"

// bearerScheme is the only authorization scheme accepted.
const bearerScheme = "Bearer"

// presentedToken is what a call's metadata says about its bearer token.
type presentedToken struct {
	// present is true when the call carried authorization metadata at all.
	present bool
	// token is the bearer token; "" when absent or malformed.
	token string
}

// tokenFromMetadata extracts the bearer token of an incoming call. More than
// one authorization value, another scheme, or a token with whitespace or
// control characters is malformed (a refusal), never guessed at.
func tokenFromMetadata(ctx context.Context) (presentedToken, *refusal) {
	values := metadata.ValueFromIncomingContext(ctx, authorizationHeader)
	if len(values) == 0 {
		return presentedToken{}, nil
	}
	malformed := &refusal{reason: ReasonTokenInvalid, message: msgTokenMalformed}
	if len(values) != 1 {
		return presentedToken{present: true}, malformed
	}
	scheme, token, found := strings.Cut(values[0], " ")
	if !found || !strings.EqualFold(scheme, bearerScheme) || !plainToken(token) {
		return presentedToken{present: true}, malformed
	}
	return presentedToken{present: true, token: token}, nil
}

// plainToken reports whether token is non-empty printable ASCII without
// spaces, the only shape a token of ours can have.
func plainToken(token string) bool {
	if token == "" {
		return false
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// MatchToken returns the caller whose token_sha256 is the SHA-256 of token.
//
// NOTE: the digest is compared with every entry, always all of them, with
// subtle.ConstantTimeCompare, and the matching index is selected without a
// branch, so neither the time taken nor the memory touched depends on which
// entry (if any) matched.
func (s *CallerSet) MatchToken(token string) (Caller, bool) {
	digest := sha256.Sum256([]byte(token))
	found, index := 0, 0
	for i := range s.digests {
		equal := subtle.ConstantTimeCompare(digest[:], s.digests[i][:])
		index = subtle.ConstantTimeSelect(equal, i, index)
		found |= equal
	}
	if found == 0 {
		return Caller{}, false
	}
	return s.callers[index], true
}

// tokenFingerprint is the first 8 hex characters of the token's SHA-256:
// enough for an operator to find the entry in the callers file (whose
// digests start the same), too little to help guess the token. It is the
// only trace of a token that may be logged.
func tokenFingerprint(token string) string {
	digest := sha256.Sum256([]byte(token))
	return hex.EncodeToString(digest[:4])
}
