package registry

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AssignmentIssue is a (user, customer) pair whose assignment is not
// settled by a recorded key: its outcome is unknown, or it is orphaned,
// untrusted or assigned elsewhere.
type AssignmentIssue struct {
	// Terms are the terms the pair was reserved with.
	Terms KeyTerms
	// State is AssignmentUnknown, AssignmentOrphaned, AssignmentUntrusted or
	// AssignmentElsewhere.
	State AssignmentState
	// Reason is what was recorded for operators.
	Reason string
	// ReservedAt is when the pair was last reserved, before an upstream
	// call (the reconciler's claims included).
	ReservedAt time.Time
	// ResolveAttempts counts the reconciler's (and operators') re-sends of
	// the assignment so far.
	ResolveAttempts int
	// ResolveAfter is when the reconciler may next re-send it (zero: at its
	// next pass).
	ResolveAfter time.Time
	// Resolving reports that a re-send is under way now.
	Resolving bool
}

// AssignmentIssueFilter narrows ListAssignmentIssues. Empty fields match
// everything.
type AssignmentIssueFilter struct {
	// State, when not zero, is the one state listed.
	State AssignmentState
	// CustomerID limits the listing to one organisation.
	CustomerID string
	// Lease, when positive, lists a pending reservation older than it as
	// unknown: its holder has died or given up, and the row says so as soon
	// as anything reserves it again (ReserveAssignment's rule).
	Lease time.Duration
}

// assignmentIssuesCursor is the page token kind of ListAssignmentIssues.
const assignmentIssuesCursor = "i1"

// issueStates maps the states an issue can be listed as to keys.state.
var issueStates = map[AssignmentState]string{
	AssignmentUnknown:   keyUnknown,
	AssignmentOrphaned:  keyOrphaned,
	AssignmentUntrusted: keyUntrusted,
	AssignmentElsewhere: keyElsewhere,
}

// ListAssignmentIssues pages the unsettled pairs, most recently reserved
// first; next is "" on the last page.
func (s *Store) ListAssignmentIssues(ctx context.Context, f AssignmentIssueFilter, p Page) (issues []AssignmentIssue, next string, err error) {
	ctx, end := s.tel.start(ctx, "ListAssignmentIssues")
	defer func() { end(err, "") }()

	size := pageSize(p.Size)
	q := listQuery{}
	if p.Token != "" {
		c, err := decodeCursor(assignmentIssuesCursor, p.Token)
		if err != nil {
			return nil, "", err
		}
		id, err := strconv.ParseInt(c.id, 10, 64)
		if err != nil {
			return nil, "", ErrInvalidPageToken
		}
		q.where = append(q.where, fmt.Sprintf("(reserved_at, id) < (%s, %s)",
			q.args.add(s.dialect.timeArg(c.at)), q.args.add(id)))
	}
	// A pending row is unknown when the reconciler holds it, or when its
	// lease has run out.
	pending := func() string {
		if f.Lease <= 0 {
			return "(state = 'pending' AND resolve_attempts > 0)"
		}
		return "(state = 'pending' AND (resolve_attempts > 0 OR reserved_at < " + q.args.add(s.dialect.timeArg(s.now().Add(-f.Lease))) + "))"
	}
	switch f.State {
	case 0:
		q.where = append(q.where, "(state IN ('unknown', 'orphaned', 'untrusted', 'elsewhere') OR "+pending()+")")
	case AssignmentUnknown:
		q.where = append(q.where, "(state = 'unknown' OR "+pending()+")")
	default:
		column, ok := issueStates[f.State]
		if !ok {
			return nil, "", fmt.Errorf("%w: %s is not a state an assignment issue can be in", ErrInvalidArgument, f.State)
		}
		q.where = append(q.where, "state = "+q.args.add(column))
	}
	q.equal("customer_id", f.CustomerID)
	// Only fixed column names and $n parameter marks are formatted in.
	query := fmt.Sprintf("SELECT %s, resolve_attempts, resolve_after FROM keys WHERE %s ORDER BY reserved_at DESC, id DESC LIMIT %s", //nolint:gosec // G201: no value is formatted in
		keyColumns, strings.Join(q.where, " AND "), q.args.add(size+1))

	rows, err := s.read.QueryContext(ctx, query, q.args...)
	if err != nil {
		return nil, "", fmt.Errorf("registry: list assignment issues: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var row keyRow
		var after dbTime
		issue := AssignmentIssue{}
		err := rows.Scan(&row.id, &row.terms.UserIdentifier, &row.terms.CustomerID, &row.terms.CustomerName,
			&row.terms.PackageID, &row.terms.PackageName, &row.terms.KeyEnvironment, &row.terms.Caller,
			&row.state, &row.reason, &row.token, &row.reservedAt,
			&row.keyID, &row.publicKey, &row.fingerprint, &row.assignedAt,
			&row.receipt[0], &row.receipt[1], &row.receipt[2], &issue.ResolveAttempts, &after)
		if err != nil {
			return nil, "", fmt.Errorf("registry: list assignment issues: %w", err)
		}
		issue.Terms, issue.Reason, issue.ReservedAt, issue.ResolveAfter = row.terms, row.reason, row.reservedAt.Time, after.Time
		switch row.state {
		case keyPending:
			issue.State, issue.Resolving = AssignmentUnknown, issue.ResolveAttempts > 0
			if !issue.Resolving {
				issue.Reason = staleReason(f.Lease)
			}
		case keyUnknown:
			issue.State = AssignmentUnknown
		case keyOrphaned:
			issue.State = AssignmentOrphaned
		case keyUntrusted:
			issue.State = AssignmentUntrusted
		case keyElsewhere:
			issue.State = AssignmentElsewhere
		default:
			return nil, "", fmt.Errorf("registry: list assignment issues: row in state %q", row.state)
		}
		issues = append(issues, issue)
		ids = append(ids, row.id)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("registry: list assignment issues: %w", err)
	}
	if len(issues) > size {
		issues = issues[:size]
		next = encodeCursor(assignmentIssuesCursor, cursor{at: issues[size-1].ReservedAt, id: strconv.FormatInt(ids[size-1], 10)})
	}
	return issues, next, nil
}
