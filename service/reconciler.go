package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
)

// Outcomes of recovery.assignment.resolutions: what one re-send of an
// unknown pair's assignment settled.
const (
	// resolutionRecorded: the upstream answered 200; the key was verified
	// and recorded.
	resolutionRecorded = "recorded"
	// resolutionOrphaned: the upstream answered 409: the lost attempt had
	// assigned the key.
	resolutionOrphaned = "orphaned"
	// resolutionUntrusted: the upstream's key failed verification.
	resolutionUntrusted = "untrusted"
	// resolutionDeferred: nothing settled (the upstream or the verification
	// keys were unavailable, or the answer was lost again); tried again
	// after a backoff.
	resolutionDeferred = "deferred"
)

// maxResolveBackoff bounds the wait between two re-sends of one pair.
const maxResolveBackoff = 30 * time.Minute

// maxClaimsPerPass bounds one reconciler pass, so a backlog is worked off
// over several passes rather than in one long burst.
const maxClaimsPerPass = 100

// resolutionInstruments counts resolutions by outcome.
type resolutionInstruments struct {
	resolutions metric.Int64Counter
}

func newResolutionInstruments() *resolutionInstruments {
	// NOTE: as newInstruments: a constant name cannot fail.
	c, _ := otel.Meter(instrumentationName).Int64Counter("recovery.assignment.resolutions",
		metric.WithDescription("Re-sends of assignments whose outcome was unknown, by outcome: recorded, orphaned, untrusted, deferred."))
	return &resolutionInstruments{resolutions: c}
}

func (m *resolutionInstruments) resolution(ctx context.Context, outcome string) {
	m.resolutions.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

// Claims is what the reconciler needs of the registry: unknown pairs
// claimed one at a time, and a claim ended without an outcome.
type Claims interface {
	ClaimUnknownAssignment(ctx context.Context, dueBy time.Time, lease time.Duration) (registry.AssignmentClaim, bool, error)
	ClaimAssignment(ctx context.Context, userIdentifier, customerID string, lease time.Duration) (registry.AssignmentClaim, registry.AssignmentState, error)
	DeferAssignment(ctx context.Context, token, reason string, retryAt time.Time) error
	ClaimForImport(ctx context.Context, userIdentifier, customerID string) (registry.AssignmentClaim, registry.AssignmentState, string, error)
}

// Reconciler resolves the pairs whose assignment outcome is unknown (an
// answer lost after the adapter's retries, a replica killed between its
// reservation and its record): it re-sends each one's assignment, which
// the upstream answers with the key (200: verified and recorded, so the
// customer's next AssignKey gets it) or with 409 (the lost attempt made the
// key: orphaned, an operator's case). It never makes a second key: the
// upstream refuses a second assignment of a pair. Replicas sharing a
// registry each run one; the registry's claims keep any two from
// re-sending one pair at once.
type Reconciler struct {
	s        *Server
	interval time.Duration
}

// NewReconciler returns s's reconciler, or nil when s was configured
// without one (Config.ReconcileInterval 0).
func (s *Server) NewReconciler() *Reconciler {
	if s.reconcileInterval <= 0 {
		return nil
	}
	return &Reconciler{s: s, interval: s.reconcileInterval}
}

// Run makes a pass at once and then every interval until ctx ends: pairs
// a killed process left unknown (their lease run out) are resolved when a
// replica starts, not an interval later. A pass under way when ctx ends
// finishes the re-send it has started (its record keeps the pair
// exactly-once) and claims nothing more.
func (r *Reconciler) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.s.log.LogAttrs(ctx, slog.LevelWarn, "reconciler pass failed; trying again at the next", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass claims and resolves unknown pairs whose backoff has passed, one at a
// time, until none is left or maxClaimsPerPass were claimed, and returns
// how many it claimed.
func (r *Reconciler) Pass(ctx context.Context) (int, error) {
	// NOTE: a pair deferred during this pass is due after its start, so the
	// pass re-sends each pair at most once.
	start := r.s.now()
	for n := 0; n < maxClaimsPerPass; n++ {
		if ctx.Err() != nil {
			return n, nil
		}
		claim, ok, err := r.s.claims.ClaimUnknownAssignment(ctx, start, r.s.lease())
		if err != nil {
			return n, fmt.Errorf("claiming an unknown assignment: %w", err)
		}
		if !ok {
			return n, nil
		}
		r.s.resolveClaim(ctx, claim)
	}
	return maxClaimsPerPass, nil
}

// minResolveBackoff is the shortest wait between two re-sends of one pair:
// the registry keeps microseconds, and a deferred pair must fall due after
// the pass that deferred it began.
const minResolveBackoff = time.Millisecond

// resolveBackoff is how long a pair waits after its attempt-th re-send
// settled nothing: the reconcile interval, doubled per attempt, at least
// minResolveBackoff and at most maxResolveBackoff.
func (s *Server) resolveBackoff(attempt int) time.Duration {
	d := max(s.reconcileInterval, minResolveBackoff)
	for i := 1; i < attempt && d < maxResolveBackoff; i++ {
		d *= 2
	}
	return min(d, maxResolveBackoff)
}

// resolveClaim re-sends the claimed pair's assignment and settles the
// claim; it returns the outcome and, when recorded, the key.
func (s *Server) resolveClaim(ctx context.Context, claim registry.AssignmentClaim) (string, *registry.Key) {
	// NOTE: as newAssignment: once the re-send may have been sent, only
	// recording its outcome keeps the pair exactly-once, so the work runs on
	// a context that ctx's end does not cancel, bounded by the lease.
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.lease())
	defer cancel()
	terms := claim.Terms
	log := s.log.With(slog.String("customer_id", terms.CustomerID), slog.String("user_identifier", terms.UserIdentifier),
		slog.Int("attempt", claim.Attempt))

	deferClaim := func(reason string) (string, *registry.Key) {
		retryAt := s.now().Add(s.resolveBackoff(claim.Attempt))
		if err := s.claims.DeferAssignment(work, claim.Token, reason, retryAt); err != nil {
			log.LogAttrs(work, slog.LevelError, "deferring an assignment resolution failed; the claim's lease will end it",
				slog.String("error", err.Error()))
		}
		log.LogAttrs(work, slog.LevelWarn, "assignment still unknown; re-sending again later",
			slog.String("reason", reason), slog.Time("retry_at", retryAt))
		s.resolutions.resolution(work, resolutionDeferred)
		return resolutionDeferred, nil
	}

	keys, err := s.loadVerificationKeys(work)
	if err != nil {
		// Nothing sent: a key that could not be verified would be lost to
		// an operator.
		return deferClaim(fmt.Sprintf("not re-sent: the verification keys are unavailable: %v", err))
	}
	call, cancelCall := context.WithTimeout(work, s.callTimeout)
	resp, err := s.upstream.AssignKey(call, upstreamAssignRequest(terms))
	cancelCall()
	if err != nil {
		if ue, ok := errors.AsType[*upstream.Error](err); ok && ue.Kind == upstream.KindAlreadyAssigned {
			// The pair's outcome was unknown because an attempt of ours may
			// have assigned it; the 409 says it did.
			log.LogAttrs(work, slog.LevelError, "assignment orphaned: the re-send met the upstream's 409; the lost attempt had assigned the key",
				slog.String("error", err.Error()))
			s.failAssignment(work, claim.Token, registry.AssignmentOrphaned,
				"the reconciler's re-send met the upstream's 409: an earlier attempt of ours assigned the key and its answer was lost")
			s.resolutions.resolution(work, resolutionOrphaned)
			return resolutionOrphaned, nil
		}
		return deferClaim(fmt.Sprintf("re-send failed: %v", err))
	}
	key, err := s.verifyAssignment(work, terms, resp, keys)
	if err != nil {
		s.failAssignment(work, claim.Token, registry.AssignmentUntrusted,
			fmt.Sprintf("key %s failed verification: %v", resp.KeyID, err))
		log.LogAttrs(work, slog.LevelError, "re-sent assignment's key failed verification", slog.String("error", err.Error()))
		s.resolutions.resolution(work, resolutionUntrusted)
		return resolutionUntrusted, nil
	}
	if err := s.assignments.CompleteAssignment(work, claim.Token, *key); err != nil {
		log.LogAttrs(work, slog.LevelError, "verified key assigned upstream but not recorded",
			slog.String("key_id", key.KeyID), slog.String("error", err.Error()))
		return deferClaim(fmt.Sprintf("key %s assigned and verified upstream but recording failed: %v", key.KeyID, err))
	}
	log.LogAttrs(work, slog.LevelInfo, "unknown assignment resolved: key recorded", slog.String("key_id", key.KeyID))
	s.resolutions.resolution(work, resolutionRecorded)
	if recorded, err := s.recorded.GetKey(work, key.KeyID); err == nil {
		return resolutionRecorded, recorded
	}
	return resolutionRecorded, key
}
