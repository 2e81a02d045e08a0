package service

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/registry"
)

// ResolveAssignment re-sends one unknown pair's assignment now, as the
// reconciler would, and says what that settled.
func (a *Admin) ResolveAssignment(ctx context.Context, req *recoveryv1.ResolveAssignmentRequest) (*recoveryv1.ResolveAssignmentResponse, error) {
	s := a.s
	annotate(ctx, attribute.String("customer_id", req.GetCustomerId()))
	claim, state, err := s.claims.ClaimAssignment(ctx, req.GetUserIdentifier(), req.GetCustomerId(), s.lease())
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, s.statusFromError(ctx, "ResolveAssignment", notResolvable("none", err))
	case err != nil:
		return nil, s.statusFromError(ctx, "ResolveAssignment", registryFailure(err))
	}
	switch state {
	case registry.AssignmentReserved:
	case registry.AssignmentInProgress, registry.AssignmentResolving:
		f := fail(ReasonAssignmentInProgress, fmt.Errorf("the pair is %s", state))
		f.retryAfter = inProgressRetryDelay
		return nil, s.statusFromError(ctx, "ResolveAssignment", f)
	default:
		return nil, s.statusFromError(ctx, "ResolveAssignment", notResolvable(state.String(), fmt.Errorf("the pair is %s", state)))
	}
	outcome, key := s.resolveClaim(ctx, claim)
	out := &recoveryv1.ResolveAssignmentResponse{Resolution: resolutionToProto(outcome)}
	if key != nil {
		if out.Key, err = keyToProto(key); err != nil {
			return nil, s.statusFromError(ctx, "ResolveAssignment", err)
		}
	}
	return out, nil
}

// notResolvable is ASSIGNMENT_NOT_RESOLVABLE naming the pair's state.
func notResolvable(state string, cause error) *failure {
	f := fail(ReasonAssignmentNotResolvable, cause)
	f.metadata = map[string]string{"state": state}
	return f
}

func resolutionToProto(outcome string) recoveryv1.AssignmentResolution {
	switch outcome {
	case resolutionRecorded:
		return recoveryv1.AssignmentResolution_ASSIGNMENT_RESOLUTION_RECORDED
	case resolutionOrphaned:
		return recoveryv1.AssignmentResolution_ASSIGNMENT_RESOLUTION_ORPHANED
	case resolutionUntrusted:
		return recoveryv1.AssignmentResolution_ASSIGNMENT_RESOLUTION_UNTRUSTED
	case resolutionDeferred:
		return recoveryv1.AssignmentResolution_ASSIGNMENT_RESOLUTION_DEFERRED
	}
	return recoveryv1.AssignmentResolution_ASSIGNMENT_RESOLUTION_UNSPECIFIED
}
