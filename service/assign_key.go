package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
)

// signWith are the context fields the enclave must bind into its signature,
// in request order: without them a valid signature could be replayed for
// another organisation, package or key.
var signWith = []string{"external_customer_id", "external_package_id", "key_id", "key_fingerprint"}

// Backoff while another request holds the pair's reservation.
const (
	assignmentPollStart = 50 * time.Millisecond
	assignmentPollMax   = 500 * time.Millisecond
)

// AssignKey returns the customer's verified key, assigning it upstream at
// most once per (user_identifier, organisation.customer_id), for a caller
// allowed to act for that organisation.
func (s *Server) AssignKey(ctx context.Context, req *recoveryv1.AssignKeyRequest) (*recoveryv1.AssignKeyResponse, error) {
	// recoveryd's validation interceptor has already refused a request
	// missing any of the terms (the proto's rules).
	terms := termsFromRequest(req, auth.CallerName(ctx))
	// NOTE: authorized before the pair is reserved, so a refused caller
	// neither reaches the upstream nor learns whether the pair has a key.
	if err := s.authz.Authorize(ctx, terms.CustomerID); err != nil {
		return nil, s.statusFromError(ctx, "AssignKey", err)
	}
	annotate(ctx, attribute.String("key_environment", terms.KeyEnvironment))
	key, repeat, err := s.assignKey(ctx, terms)
	var verified *verifiedKey
	if err == nil {
		// A repeat returns the recorded row: it must still verify.
		verified, err = s.checkKeyReceipt(ctx, key)
	}
	if err != nil {
		return nil, s.statusFromError(ctx, "AssignKey", err)
	}
	annotate(ctx, attribute.String("key_id", key.KeyID), attribute.Bool("already_assigned", repeat))
	return &recoveryv1.AssignKeyResponse{Key: keyToProtoPEM(key, verified.pem), AlreadyAssigned: repeat}, nil
}

// assignKey runs the exactly-once flow; repeat reports a key returned from
// the record without an upstream call.
func (s *Server) assignKey(ctx context.Context, terms registry.KeyTerms) (key *registry.Key, repeat bool, err error) {
	res, err := s.reserveAssignment(ctx, terms)
	if err != nil {
		return nil, false, err
	}
	switch res.State {
	case registry.AssignmentReserved:
		key, err := s.newAssignment(ctx, terms, res.Token)
		return key, false, err
	case registry.AssignmentRecorded:
		key, err := s.repeatAssignment(ctx, terms, res)
		return key, err == nil, err
	case registry.AssignmentUnknown:
		s.metrics.assignment(ctx, outcomeUnknown)
		cause := fmt.Errorf("assignment recorded with unknown outcome: %s", res.Reason)
		if s.reconcileInterval <= 0 {
			return nil, false, fail(ReasonAssignmentOutcomeUnknown, cause)
		}
		// The reconciler re-sends it at its first pass after ResolveAfter.
		return nil, false, s.beingResolved(cause, max(res.ResolveAfter.Sub(s.now()), 0)+s.reconcileInterval)
	case registry.AssignmentResolving:
		s.metrics.assignment(ctx, outcomeUnknown)
		return nil, false, s.beingResolved(errors.New("the reconciler is re-sending the assignment now"), inProgressRetryDelay)
	case registry.AssignmentUntrusted:
		s.metrics.assignment(ctx, outcomeUntrusted)
		return nil, false, fail(ReasonEnclaveSignatureInvalid,
			fmt.Errorf("assignment recorded as untrusted: %s", res.Reason))
	case registry.AssignmentElsewhere:
		s.metrics.assignment(ctx, outcomeAssignedElsewhere)
		return nil, false, fail(ReasonAssignedElsewhere,
			fmt.Errorf("assignment recorded as assigned elsewhere: %s", res.Reason))
	case registry.AssignmentOrphaned:
		s.metrics.assignment(ctx, outcomeOrphaned)
		return nil, false, fail(ReasonAssignmentOrphaned,
			fmt.Errorf("assignment recorded as orphaned: %s", res.Reason))
	default:
		return nil, false, fmt.Errorf("registry returned assignment state %d", res.State)
	}
}

// reserveAssignment reserves the pair, waiting (with backoff, at most
// s.assignmentWait) while a concurrent request holds it, so that the
// concurrent callers of one pair all get the one key.
func (s *Server) reserveAssignment(ctx context.Context, terms registry.KeyTerms) (registry.AssignmentReservation, error) {
	wait, cancel := context.WithTimeout(ctx, s.assignmentWait)
	defer cancel()
	delay := assignmentPollStart
	for {
		res, err := s.assignments.ReserveAssignment(ctx, terms, s.lease())
		if err != nil {
			return res, registryFailure(err)
		}
		if res.State != registry.AssignmentInProgress {
			return res, nil
		}
		timer := time.NewTimer(delay)
		select {
		case <-wait.Done():
			timer.Stop()
			if errors.Is(ctx.Err(), context.Canceled) {
				return res, ctx.Err()
			}
			f := fail(ReasonAssignmentInProgress, errors.New("another request still holds the reservation"))
			f.retryAfter = inProgressRetryDelay
			return res, f
		case <-timer.C:
		}
		delay = min(2*delay, assignmentPollMax)
	}
}

// repeatAssignment returns the recorded key when the terms match; a request
// for other terms is not a repeat and must not silently get this key.
func (s *Server) repeatAssignment(ctx context.Context, terms registry.KeyTerms, res registry.AssignmentReservation) (*registry.Key, error) {
	key := res.Key
	if key == nil {
		return nil, errors.New("registry reported a recorded assignment without its key")
	}
	if key.KeyEnvironment != terms.KeyEnvironment || key.PackageID != terms.PackageID {
		s.metrics.assignment(ctx, outcomeDifferentTerms)
		f := fail(ReasonAssignedWithDifferentTerms, fmt.Errorf(
			"key %s recorded for %s/%s, request asks for %s/%s",
			key.KeyID, key.KeyEnvironment, key.PackageID, terms.KeyEnvironment, terms.PackageID))
		f.metadata = map[string]string{
			"recorded_key_environment": environmentFromName(key.KeyEnvironment).String(),
			"recorded_package_id":      key.PackageID,
			"recorded_package_name":    key.PackageName,
		}
		return nil, f
	}
	s.metrics.assignment(ctx, outcomeRepeat)
	return key, nil
}

// newAssignment calls upstream on a reservation this request owns, verifies
// the answer and records it.
func (s *Server) newAssignment(ctx context.Context, terms registry.KeyTerms, token string) (*registry.Key, error) {
	// NOTE: once the upstream call may have been sent, only recording its
	// outcome keeps the pair exactly-once, so everything after the
	// reservation runs on a context the caller's departure does not cancel,
	// bounded by the lease.
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.lease())
	defer cancel()

	// Load the verification keys before asking for a key: if they cannot be
	// had, nothing is assigned and the caller may simply retry.
	keys, err := s.loadVerificationKeys(ctx)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		s.releaseAssignment(work, token)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fail(ReasonVerificationKeysUnavailable, err)
	}

	call, cancelCall := context.WithTimeout(work, s.callTimeout)
	resp, err := s.upstream.AssignKey(call, upstreamAssignRequest(terms))
	cancelCall()
	if err != nil {
		return nil, s.assignmentFailed(work, terms, token, err)
	}

	key, err := s.verifyAssignment(work, terms, resp, keys)
	if err != nil {
		s.failAssignment(work, token, registry.AssignmentUntrusted,
			fmt.Sprintf("key %s failed verification: %v", resp.KeyID, err))
		s.metrics.assignment(ctx, outcomeUntrusted)
		return nil, fail(ReasonEnclaveSignatureInvalid, err)
	}

	// The key commits together with the call's audit record.
	write := recordedWrite(work, WriteSubject{CustomerID: terms.CustomerID, PackageID: terms.PackageID, KeyID: key.KeyID})
	if err := s.assignments.CompleteAssignment(write, token, *key); err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "verified key assigned upstream but not recorded",
			slog.String("key_id", key.KeyID), slog.String("customer_id", terms.CustomerID),
			slog.String("error", err.Error()))
		s.failAssignment(work, token, registry.AssignmentUnknown,
			fmt.Sprintf("key %s assigned and verified upstream but recording failed: %v", key.KeyID, err))
		s.metrics.assignment(ctx, outcomeUnknown)
		return nil, s.unknownOutcome(err)
	}
	s.metrics.assignment(ctx, outcomeNew)
	// Read back what was recorded so this answer and every repeat agree to
	// the registry's time precision.
	if recorded, err := s.recorded.GetKey(work, key.KeyID); err == nil {
		return recorded, nil
	}
	return key, nil
}

// loadVerificationKeys returns the keys eligible now, refreshing once when
// the cached set holds none. A set with no eligible key (every key retired,
// published for another purpose, or not valid yet) could verify nothing: an
// assignment made with it would be parked as untrusted, and the pair lost
// to an operator, for want of a key, so it is an error before the upstream
// is asked.
func (s *Server) loadVerificationKeys(ctx context.Context) ([]keycrypto.VerificationKey, error) {
	keys, err := s.keys.Keys(ctx)
	if err == nil && len(keys) == 0 {
		keys, err = s.keys.Refresh(ctx)
	}
	if err == nil && len(keys) == 0 {
		err = fmt.Errorf("%w: the JWKS publishes no %s key valid now", keycrypto.ErrNoVerificationKey, keycrypto.PurposeAssignmentSig)
	}
	return keys, err
}

// assignmentFailed settles the reservation after a failed upstream call and
// says what the caller gets. The adapter has already retried what was safe
// (upstream.Client.AssignKey: a repeat can only meet the upstream's 409).
//
// NOTE: the 409 cases come first. A 409 assigned nothing on its own
// attempt, yet the upstream holds a key for the pair, so releasing the pair
// would hide that key from the registry. After an ambiguous attempt of this
// very call, that key is the one whose answer we lost: orphaned, not
// assigned elsewhere.
func (s *Server) assignmentFailed(work context.Context, terms registry.KeyTerms, token string, err error) error {
	ue, isUpstream := errors.AsType[*upstream.Error](err)
	switch {
	case isUpstream && ue.Kind == upstream.KindAlreadyAssigned && ue.AfterAmbiguousAttempt:
		// NOTE: the one ERROR line of this orphaning; repeats are answered
		// from the registry and logged at the reason's level.
		s.log.LogAttrs(work, slog.LevelError, "assignment orphaned: the upstream assigned a key whose answer was lost",
			slog.String("customer_id", terms.CustomerID), slog.String("user_identifier", terms.UserIdentifier),
			slog.String("error", err.Error()))
		s.failAssignment(work, token, registry.AssignmentOrphaned,
			"upstream answered 409 to a retry after our earlier attempt may have assigned the key: its answer was lost")
		s.metrics.assignment(work, outcomeOrphaned)
		return fail(ReasonAssignmentOrphaned, err)
	case isUpstream && ue.Kind == upstream.KindAlreadyAssigned:
		s.log.LogAttrs(work, slog.LevelError, "upstream holds a key this registry never recorded",
			slog.String("customer_id", terms.CustomerID), slog.String("user_identifier", terms.UserIdentifier))
		s.failAssignment(work, token, registry.AssignmentElsewhere,
			"upstream answered 409 with no local record: the key was assigned outside this registry")
		s.metrics.assignment(work, outcomeAssignedElsewhere)
		return fail(ReasonAssignedElsewhere, err)
	case isUpstream && ue.NothingDone():
		s.releaseAssignment(work, token)
		return err
	default:
		s.log.LogAttrs(work, slog.LevelError, "assignment outcome unknown",
			slog.String("customer_id", terms.CustomerID), slog.String("user_identifier", terms.UserIdentifier),
			slog.String("error", err.Error()))
		s.failAssignment(work, token, registry.AssignmentUnknown,
			fmt.Sprintf("upstream call failed after it may have been sent: %v", err))
		s.metrics.assignment(work, outcomeUnknown)
		return s.unknownOutcome(err)
	}
}

// unknownOutcome is the answer for an assignment just parked unknown: being
// resolved, retry after the reconciler's next pass, when a reconciler runs;
// otherwise unknown (an operator's case).
func (s *Server) unknownOutcome(cause error) error {
	if s.reconcileInterval <= 0 {
		return fail(ReasonAssignmentOutcomeUnknown, cause)
	}
	return s.beingResolved(cause, s.reconcileInterval)
}

// beingResolved is ASSIGNMENT_BEING_RESOLVED with a RetryInfo of retry (at
// least a second).
func (s *Server) beingResolved(cause error, retry time.Duration) *failure {
	f := fail(ReasonAssignmentBeingResolved, cause)
	f.retryAfter = max(retry, time.Second)
	return f
}

func (s *Server) releaseAssignment(ctx context.Context, token string) {
	if err := s.assignments.ReleaseAssignment(ctx, token); err != nil {
		// The row stays pending and turns Unknown when its lease ends:
		// safe, but an operator will have to look at it.
		s.log.LogAttrs(ctx, slog.LevelError, "releasing an assignment reservation failed",
			slog.String("error", err.Error()))
	}
}

func (s *Server) failAssignment(ctx context.Context, token string, state registry.AssignmentState, reason string) {
	if err := s.assignments.FailAssignment(ctx, token, state, reason); err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "parking an assignment reservation failed",
			slog.Int("state", int(state)), slog.String("error", err.Error()))
	}
}
