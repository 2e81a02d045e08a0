package service

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/registry"
)

// ListAssignmentIssues pages through the pairs whose assignment is not
// settled, every organisation's: the operator role admits to all of them.
// A reservation whose lease has run out is listed as unknown, as the next
// AssignKey for it would find it.
func (a *Admin) ListAssignmentIssues(ctx context.Context, req *recoveryv1.ListAssignmentIssuesRequest) (*recoveryv1.ListAssignmentIssuesResponse, error) {
	s := a.s
	state, err := issueStateFilter(req.GetState())
	if err != nil {
		return nil, s.statusFromError(ctx, "ListAssignmentIssues", err)
	}
	issues, next, err := s.issues.ListAssignmentIssues(ctx,
		registry.AssignmentIssueFilter{State: state, CustomerID: req.GetCustomerId(), Lease: s.lease()},
		page(req.GetPageSize(), req.GetPageToken()))
	if err != nil {
		return nil, s.statusFromError(ctx, "ListAssignmentIssues", registryFailure(err))
	}
	out := &recoveryv1.ListAssignmentIssuesResponse{
		Issues:        make([]*recoveryv1.AssignmentIssue, 0, len(issues)),
		NextPageToken: next,
	}
	for i := range issues {
		out.Issues = append(out.Issues, issueToProto(&issues[i]))
	}
	return out, nil
}

// issueStateFilter is the registry's state for a request's filter (0 for
// every state).
func issueStateFilter(st recoveryv1.AssignmentIssueState) (registry.AssignmentState, error) {
	switch st {
	case recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_UNSPECIFIED:
		return 0, nil
	case recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_UNKNOWN:
		return registry.AssignmentUnknown, nil
	case recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_ORPHANED:
		return registry.AssignmentOrphaned, nil
	case recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_UNTRUSTED:
		return registry.AssignmentUntrusted, nil
	case recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_ELSEWHERE:
		return registry.AssignmentElsewhere, nil
	}
	// Validation (enum.defined_only) refuses anything else first.
	return 0, invalidField("state", fmt.Errorf("%d is not an AssignmentIssueState", st))
}

// issueStateToProto is the contract's name of a registry issue state.
func issueStateToProto(st registry.AssignmentState) recoveryv1.AssignmentIssueState {
	switch st {
	case registry.AssignmentUnknown:
		return recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_UNKNOWN
	case registry.AssignmentOrphaned:
		return recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_ORPHANED
	case registry.AssignmentUntrusted:
		return recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_UNTRUSTED
	case registry.AssignmentElsewhere:
		return recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_ELSEWHERE
	default:
		return recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_UNSPECIFIED
	}
}

func issueToProto(is *registry.AssignmentIssue) *recoveryv1.AssignmentIssue {
	t := is.Terms
	return &recoveryv1.AssignmentIssue{
		UserIdentifier: t.UserIdentifier,
		Organisation:   &recoveryv1.Organisation{CustomerId: t.CustomerID, CustomerName: t.CustomerName},
		Package:        &recoveryv1.Package{PackageId: t.PackageID, PackageName: t.PackageName},
		KeyEnvironment: environmentFromName(t.KeyEnvironment),
		State:          issueStateToProto(is.State),
		Reason:         is.Reason,
		RequestedBy:    t.Caller,
		ReservedAt:     timestamppb.New(is.ReservedAt),
	}
}
