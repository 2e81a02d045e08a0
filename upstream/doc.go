// Package upstream is the REST adapter for CoinCover's Partner Key Service:
// it turns the three partner endpoints (assign a key, store data, store a
// file) into typed Go calls, so the rest of recoveryd never handles HTTP,
// JSON or multipart itself.
//
// The adapter owns everything about the wire that could go subtly wrong:
// the bearer token (from a file, never logged), the exact request format of
// docs/upstream-contract.md (the contract in our words, with the public
// sources it comes from), bounded reads of every response, per-call
// timeouts, and the classification of every failure into an *Error whose Kind callers
// switch on (errors.Is(err, ErrNotFound) works). It retries only what
// cannot duplicate a side effect: a request that never reached the upstream,
// and a 429 that asks for a short wait. A timeout or 5xx on AssignKey is an
// unknown outcome the caller must resolve, never a retry.
//
// SecureFile streams the file through an io.Pipe into a chunked multipart
// body and aborts the request mid-body when the reader fails or the context
// ends, so the upstream stores nothing half-sent.
//
// The package also fetches the enclave's verification keys (KeySource): a
// JWKS over HTTPS without redirects, cached for its max-age and refreshed
// once on demand, or a static JWKS/PEM file for air-gapped deployments.
//
// Requests are traced with otelhttp (spans named "POST /v1/partner/keys")
// and counted in recovery.upstream.requests and
// recovery.upstream.request.duration.
package upstream
