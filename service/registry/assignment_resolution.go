package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AssignmentClaim is an unknown pair claimed for resolution: the claimer
// holds it as a reservation (Token), re-sends the assignment with Terms, and
// ends the claim as any reservation ends (CompleteAssignment,
// FailAssignment) or with DeferAssignment when the upstream settled nothing.
// A claimer that dies leaves a pending row whose lease runs out, and the
// pair is unknown, claimable, again.
type AssignmentClaim struct {
	// Token identifies the claim, as a reservation token.
	Token string
	// Terms are the terms the pair was reserved with.
	Terms KeyTerms
	// Attempt counts the claims of the pair, this one included (1 for the
	// first).
	Attempt int
}

// staleReason is the reason recorded for a reservation whose lease ran out.
func staleReason(lease time.Duration) string {
	return fmt.Sprintf("reservation lease (%s) expired before the upstream outcome was recorded: upstream may hold a key for this pair", lease)
}

// claimSQL turns one unknown row (id chosen by the caller's subquery) into
// the claimer's pending reservation.
const claimSQL = `
	UPDATE keys SET state = 'pending', reservation_token = $1, reserved_at = $2,
		resolve_attempts = resolve_attempts + 1, resolve_after = NULL
	WHERE state = 'unknown' AND id = (%s)
	RETURNING id, user_identifier, customer_id, customer_name, package_id, package_name,
		key_environment, caller, resolve_attempts`

// ClaimUnknownAssignment claims the unknown pair that has waited longest
// whose backoff (resolve_after) ended by dueBy, first turning every pending
// reservation older than lease unknown (its holder died or gave up). ok is
// false when there is nothing to claim. A pass of claims gives its start as
// dueBy, so that a pair it deferred (to a later time) is not claimed again
// by the same pass.
//
// No two claimers, in any process sharing the database, get the same pair:
// on PostgreSQL the candidate row is locked FOR UPDATE SKIP LOCKED, so
// concurrent claimers each take another row; SQLite runs one write
// transaction at a time.
func (s *Store) ClaimUnknownAssignment(ctx context.Context, dueBy time.Time, lease time.Duration) (claim AssignmentClaim, ok bool, err error) {
	ctx, end := s.tel.start(ctx, "ClaimUnknownAssignment")
	defer func() { end(err, fmt.Sprint(ok)) }()

	if lease <= 0 {
		return claim, false, fmt.Errorf("%w: lease must be positive", ErrInvalidArgument)
	}
	lock := ""
	if s.dialect.name() == (postgresDialect{}).name() {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	pick := `SELECT id FROM keys WHERE state = 'unknown' AND (resolve_after IS NULL OR resolve_after <= $3)
		ORDER BY resolve_after NULLS FIRST, id LIMIT 1` + lock
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		if err := s.expireStale(ctx, tx, lease, now); err != nil {
			return err
		}
		token := newToken()
		var err error
		claim, err = scanClaim(tx.QueryRowContext(ctx, fmt.Sprintf(claimSQL, pick), token, s.dialect.timeArg(now),
			s.dialect.timeArg(dueBy.UTC().Truncate(time.Microsecond))))
		claim.Token = token
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return AssignmentClaim{}, false, nil
	}
	if err != nil {
		return AssignmentClaim{}, false, err
	}
	return claim, true, nil
}

// ClaimAssignment claims the pair (userIdentifier, customerID) now, backoff
// or not, if its outcome is unknown (or its reservation older than lease).
// state is AssignmentReserved when claimed; otherwise the pair's state
// (AssignmentRecorded, AssignmentOrphaned, AssignmentResolving,
// AssignmentInProgress …) and nothing changed. ErrNotFound: no such pair.
func (s *Store) ClaimAssignment(ctx context.Context, userIdentifier, customerID string, lease time.Duration) (claim AssignmentClaim, state AssignmentState, err error) {
	ctx, end := s.tel.start(ctx, "ClaimAssignment")
	defer func() { end(err, state.String()) }()

	if err := checkText("user_identifier", userIdentifier, true); err != nil {
		return claim, 0, err
	}
	if err := checkText("customer_id", customerID, true); err != nil {
		return claim, 0, err
	}
	if lease <= 0 {
		return claim, 0, fmt.Errorf("%w: lease must be positive", ErrInvalidArgument)
	}
	lock := ""
	if s.dialect.name() == (postgresDialect{}).name() {
		lock = " FOR UPDATE"
	}
	pick := `SELECT id FROM keys WHERE user_identifier = $3 AND customer_id = $4` + lock
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		if err := s.expireStale(ctx, tx, lease, now); err != nil {
			return err
		}
		token := newToken()
		var err error
		claim, err = scanClaim(tx.QueryRowContext(ctx, fmt.Sprintf(claimSQL, pick), token, s.dialect.timeArg(now), userIdentifier, customerID))
		if err == nil {
			claim.Token, state = token, AssignmentReserved
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// Not claimable: say what the pair is.
		row, err := scanKeyRow(s.stmts.findKey.queryRowTx(ctx, tx, userIdentifier, customerID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: no assignment for this pair", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("registry: claim assignment: %w", err)
		}
		switch row.state {
		case keyAssigned:
			state = AssignmentRecorded
		case keyUntrusted:
			state = AssignmentUntrusted
		case keyElsewhere:
			state = AssignmentElsewhere
		case keyOrphaned:
			state = AssignmentOrphaned
		case keyPending:
			state = AssignmentInProgress
			attempts, _, err := s.resolution(ctx, tx, row.id)
			if err != nil {
				return err
			}
			if attempts > 0 {
				state = AssignmentResolving
			}
		default:
			return fmt.Errorf("registry: key row in unexpected state %q", row.state)
		}
		return nil
	})
	if err != nil {
		return AssignmentClaim{}, 0, err
	}
	return claim, state, nil
}

// DeferAssignment ends a claim whose attempt settled nothing (the upstream
// was unavailable, or its answer was lost again): the pair is unknown once
// more, with reason, and not claimed by ClaimUnknownAssignment before
// retryAt.
func (s *Store) DeferAssignment(ctx context.Context, token, reason string, retryAt time.Time) (err error) {
	ctx, end := s.tel.start(ctx, "DeferAssignment")
	defer func() { end(err, "") }()

	if err := checkToken(token); err != nil {
		return err
	}
	reason = operatorReason(reason)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `
			UPDATE keys SET state = 'unknown', reason = $1, reservation_token = NULL, resolve_after = $2
			WHERE reservation_token = $3 AND state = 'pending'`,
			reason, s.dialect.timeArg(retryAt.UTC().Truncate(time.Microsecond)), token)
		return expectOneRow(r, err, "defer assignment")
	})
}

// expireStale turns every pending reservation older than lease unknown, as
// ReserveAssignment does for the one pair it meets.
func (s *Store) expireStale(ctx context.Context, tx *sql.Tx, lease time.Duration, now time.Time) error {
	r, err := tx.ExecContext(ctx, `
		UPDATE keys SET state = 'unknown', reason = $1, reservation_token = NULL
		WHERE state = 'pending' AND reserved_at < $2`,
		staleReason(lease), s.dialect.timeArg(now.Add(-lease)))
	if err != nil {
		return fmt.Errorf("registry: expire assignment reservations: %w", err)
	}
	if n, err := r.RowsAffected(); err == nil && n > 0 {
		s.log.WarnContext(ctx, "registry: assignment reservations expired; upstream outcome unknown",
			"count", n, "lease", lease)
	}
	return nil
}

// resolution reads a row's reconciler columns: how often it was claimed,
// and when it may be claimed again (zero: at once).
func (s *Store) resolution(ctx context.Context, tx *sql.Tx, id int64) (attempts int, after time.Time, err error) {
	var at dbTime
	err = tx.QueryRowContext(ctx, `SELECT resolve_attempts, resolve_after FROM keys WHERE id = $1`, id).Scan(&attempts, &at)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("registry: read assignment resolution: %w", err)
	}
	return attempts, at.Time, nil
}

// scanClaim scans claimSQL's RETURNING row; sql.ErrNoRows passes through.
func scanClaim(r *sql.Row) (AssignmentClaim, error) {
	var c AssignmentClaim
	var id int64
	err := r.Scan(&id, &c.Terms.UserIdentifier, &c.Terms.CustomerID, &c.Terms.CustomerName,
		&c.Terms.PackageID, &c.Terms.PackageName, &c.Terms.KeyEnvironment, &c.Terms.Caller, &c.Attempt)
	if errors.Is(err, sql.ErrNoRows) {
		return c, err
	}
	if err != nil {
		return c, fmt.Errorf("registry: claim assignment: %w", err)
	}
	return c, nil
}
