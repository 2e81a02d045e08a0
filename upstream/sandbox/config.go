package sandbox

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultMaxFileBytes is the contract's secure/file limit (10 MiB).
	DefaultMaxFileBytes int64 = 10 << 20
	// DefaultPoolSize is how many fresh RSA-4096 keys the background pool
	// keeps ready; generation costs about 0.7 s of CPU per key.
	DefaultPoolSize = 4
	// DefaultSigningKID is the kid of the signing key New creates when
	// Config.SigningKeys is empty (the upstream's UAT uses the same kid).
	DefaultSigningKID = "enclave-signing-key-v1"
	// PartnerScope is the scope a token needs for the /v1/partner endpoints.
	PartnerScope = "partner-endpoint"
)

// Misbehaviour modes (Config.Misbehave): each breaks the enclave signature in
// one way a client must detect, while everything else behaves normally.
const (
	// MisbehaveBadSignature signs with a key the JWKS does not publish.
	MisbehaveBadSignature = "bad-signature"
	// MisbehaveWrongBinding binds a different external_customer_id into
	// signed_payload (only visible when sign_with asks for it).
	MisbehaveWrongBinding = "wrong-binding"
	// MisbehaveSwappedKey signs a different public key than the one returned.
	MisbehaveSwappedKey = "swapped-key"
)

// Config configures a Server. The zero value is a usable in-memory emulator
// with the development tokens, the contract's limits and a background key
// pool.
type Config struct {
	// Tokens are the API keys the emulator accepts. Empty means DevTokens().
	Tokens []Token
	// DataDir holds the persistent state; "" keeps everything in memory.
	DataDir string
	// MaxFileBytes limits the file part of secure/file (0 = DefaultMaxFileBytes).
	MaxFileBytes int64
	// RateLimit is the sustained requests per second allowed per token on the
	// partner endpoints (0 = unlimited). Over it the emulator answers 429
	// with Retry-After in whole seconds.
	RateLimit float64
	// RateBurst is how many requests a token may make at once before the rate
	// applies (0 = RateLimit rounded up, at least 1).
	RateBurst int
	// KeySource supplies the RSA-4096 key for each assignment. nil means a
	// background pool of freshly generated keys (persisted under DataDir);
	// tests pass testkeys.NewRSASource() so they never wait for generation.
	KeySource func() (*rsa.PrivateKey, error)
	// PoolSize is the background pool's size (0 = DefaultPoolSize); unused
	// when KeySource is set.
	PoolSize int
	// SigningKeys are the enclave signing keys. Empty means one key with kid
	// DefaultSigningKID, loaded from DataDir or generated (and persisted).
	// Exactly one may be Active; when none is, the first published key that
	// is valid at start signs.
	SigningKeys []SigningKey
	// Now is the clock (nil = time.Now); rate limiting and stored_at use it.
	Now func() time.Time
	// Misbehave is "" or one of the Misbehave* modes.
	Misbehave string
	// Faults maps fault kinds (Fault500 … FaultTruncated) to the
	// probability that a partner request gets that fault; they add up to at
	// most 1. The JWKS, health and inspection endpoints never fail.
	Faults map[string]float64
	// FaultSeed seeds the fault draws, for a reproducible run (0 = random).
	FaultSeed int64
	// FaultDelay is FaultSlow's delay (0 = DefaultFaultDelay).
	FaultDelay time.Duration
	// FaultPaths limits the faults to these partner paths (PathSecureFile,
	// …), so a test can fail one endpoint's requests only and each draw
	// of a seeded run falls on them; empty means every partner path.
	FaultPaths []string
	// Latency is added to every partner request, as a WAN link would.
	Latency time.Duration
	// NoInspection leaves out the inspection endpoints (/sandbox/v1/...:
	// private keys, backup contents, recover), which then answer 404 like
	// any unknown path. An emulator embedded in another server (recoveryd's)
	// sets it: only sandboxd, a test tool, serves them.
	NoInspection bool
	// SkipDataVerification stores secure/data without the enclave's
	// decrypt-and-checksum check (the ciphertext must still be one RSA-4096
	// block): for benchmarks, so the emulator's private-key work is not what
	// both sides of a comparison measure. Never for correctness tests.
	SkipDataVerification bool
	// Logger receives one line per request and lifecycle events (nil =
	// slog.Default()). Tokens and plaintext never reach it.
	Logger *slog.Logger
}

// SigningKey is one enclave signing key of the emulator.
type SigningKey struct {
	// KID is the JWKS kid.
	KID string
	// Private signs assignments when the key is active.
	Private *ecdsa.PrivateKey
	// Purposes published in coincover:purposes (nil = ["assignment-sig"]).
	Purposes []string
	// ValidFrom published in coincover:validFrom.
	ValidFrom time.Time
	// Retired keys are not published in the JWKS any more (and never sign).
	Retired bool
	// Active marks the key that signs assignments.
	Active bool
}

// withDefaults validates c and fills in its zero fields.
func (c Config) withDefaults() (Config, error) {
	if c.MaxFileBytes < 0 {
		return c, errors.New("sandbox: MaxFileBytes must not be negative")
	}
	if c.MaxFileBytes == 0 {
		c.MaxFileBytes = DefaultMaxFileBytes
	}
	if c.RateLimit < 0 || c.RateBurst < 0 {
		return c, errors.New("sandbox: RateLimit and RateBurst must not be negative")
	}
	if c.PoolSize < 0 {
		return c, errors.New("sandbox: PoolSize must not be negative")
	}
	if c.PoolSize == 0 {
		c.PoolSize = DefaultPoolSize
	}
	switch c.Misbehave {
	case "", MisbehaveBadSignature, MisbehaveWrongBinding, MisbehaveSwappedKey:
	default:
		return c, fmt.Errorf("sandbox: unknown misbehave mode %q (want %s, %s or %s)",
			c.Misbehave, MisbehaveBadSignature, MisbehaveWrongBinding, MisbehaveSwappedKey)
	}
	if err := checkFaults(c.Faults); err != nil {
		return c, fmt.Errorf("sandbox: %w", err)
	}
	if c.FaultDelay < 0 || c.Latency < 0 {
		return c, errors.New("sandbox: FaultDelay and Latency must not be negative")
	}
	if c.FaultDelay == 0 {
		c.FaultDelay = DefaultFaultDelay
	}
	if len(c.Tokens) == 0 {
		c.Tokens = DevTokens()
	}
	if err := validateTokens(c.Tokens); err != nil {
		return c, err
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
