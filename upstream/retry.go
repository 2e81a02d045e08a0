package upstream

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Retry policy, one per operation (retryPolicies): exponential backoff with
// full jitter, Retry-After honoured, never past the call's deadline, a
// bounded number of attempts.
const (
	// maxRetries is the most extra attempts one call makes.
	maxRetries = 2
	// backoffBase is the first backoff's ceiling; each retry doubles it.
	backoffBase = 100 * time.Millisecond
	// backoffMax caps one backoff.
	backoffMax = 2 * time.Second
	// maxRetryAfter is the longest Retry-After a 429 or 503 may ask for and
	// still be retried inside the call; longer waits go back to the caller.
	maxRetryAfter = 5 * time.Second
)

// retryPolicy says which failed attempts of one operation are retried.
type retryPolicy struct {
	// ambiguous: also retry an attempt that may have acted (a 5xx, a reset,
	// a lost answer). Only where a repeat is harmless: a second secure/data
	// store leaves at most an extra copy upstream, which is acceptable; a
	// lost acknowledged backup is not.
	ambiguous bool
	// conflictOnRepeat: the upstream answers a repeat of an attempt that
	// acted with 409 instead of acting twice, so a retry never duplicates,
	// and a 409 after an ambiguous attempt is that attempt's lost answer
	// (Error.AfterAmbiguousAttempt).
	conflictOnRepeat bool
}

// retryPolicies are the operations' policies. AssignKey retries after an
// ambiguous failure too: the upstream answers a second assignment for the
// same pair with 409, so a retry can never create a second key; it either
// gets the key (the first attempt assigned nothing) or a 409 that the
// adapter marks as following our own ambiguous attempt, for the service to
// record the pair as orphaned rather than assigned elsewhere.
//
// SecureFile is retried only when its upload is replayable
// (SecureFileRequest.Replay: the caller spools the file), with the same
// reasoning as SecureData: a repeat leaves at most an extra copy.
var retryPolicies = map[endpoint]retryPolicy{
	endpointAssignKey:  {ambiguous: true, conflictOnRepeat: true},
	endpointSecureData: {ambiguous: true},
	endpointSecureFile: {ambiguous: true},
}

// retryDelay says whether attempt (0 for the first) may be retried after
// err under p, and after how long.
func retryDelay(p retryPolicy, err *Error, attempt int) (time.Duration, bool) {
	switch {
	case err.Kind == KindRateLimited:
		// A 429 did nothing; it is retried when its wait is short.
		if err.RetryAfter > maxRetryAfter {
			return 0, false
		}
		return max(err.RetryAfter, backoff(attempt)), true
	case err.Kind != KindUnavailable:
		// 4xx refusals would fail the same way again; a contract breach is
		// not cured by waiting.
		return 0, false
	case err.NothingDone(), p.ambiguous:
		if err.RetryAfter > maxRetryAfter {
			return 0, false
		}
		return max(err.RetryAfter, backoff(attempt)), true
	}
	return 0, false
}

// backoff is attempt's wait with full jitter: uniform in [0, ceiling), the
// ceiling doubling from backoffBase up to backoffMax.
func backoff(attempt int) time.Duration {
	ceiling := min(backoffBase<<min(attempt, 16), backoffMax)
	return rand.N(ceiling) //nolint:gosec // jitter, not a secret.
}

// Circuit breaker settings: while the upstream fails call after call,
// requests fail fast instead of piling up on a dead dependency.
const (
	// breakerTripFailures is how many attempts in a row must fail (5xx,
	// no answer) to open the breaker. NOTE: 10, not 5: under a 30% rate of
	// random upstream faults, five failures in a row come every few hundred
	// attempts, and each opening failed every call for breakerOpenFor
	// (make soak measured SecureData at 87% OK with 5, 98% without the
	// openings); ten in a row at 30% come about once in 170,000 attempts,
	// while a dead upstream still trips it within four calls.
	breakerTripFailures = 10
	// breakerOpenFor is how long it stays open before a probe.
	breakerOpenFor = 5 * time.Second
	// breakerProbes is how many calls a half-open breaker lets through.
	breakerProbes = 1
)

// newBreaker is the client's breaker: one for the upstream, since its
// endpoints share a host and fail together. Only the upstream's own
// failures count; its refusals (4xx) are answers.
func newBreaker(log *slog.Logger, m *clientMetrics) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "upstream",
		MaxRequests: breakerProbes,
		Timeout:     breakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= breakerTripFailures },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			log.Warn("upstream circuit breaker changed state", slog.String("from", from.String()), slog.String("to", to.String()))
			m.breakerState(to)
		},
	})
}

// breakerOpen is the error of a call the open breaker refused: nothing was
// sent, and the caller is told when to try again.
func breakerOpen(e endpoint, err error) *Error {
	return &Error{Kind: KindUnavailable, Endpoint: e.String(), Sent: false,
		Message: "circuit breaker open: the upstream failed repeatedly; not sent", RetryAfter: breakerOpenFor, Err: err}
}

// upstreamFault reports whether err counts against the breaker: the
// upstream failed to answer, or answered 5xx.
func upstreamFault(err *Error) bool {
	return err != nil && err.Kind == KindUnavailable && !errors.Is(err, context.Canceled)
}
