package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// KeyTerms are what an assignment is for. (UserIdentifier, CustomerID) is
// the unique pair; the rest are the terms a repeat must match.
type KeyTerms struct {
	UserIdentifier string
	CustomerID     string
	CustomerName   string
	PackageID      string
	PackageName    string
	KeyEnvironment string // "HOT" | "COLD"
	Caller         string // authenticated caller name, "" when auth is off
}

// Key is a recorded, verified key assignment.
type Key struct {
	KeyTerms
	KeyID        string
	PublicKeyHex string // lowercase
	Fingerprint  string // lowercase hex SHA-256 of the DER
	AssignedAt   time.Time
	// Receipt is the enclave signature the key was verified with; zero for
	// a key recorded before receipts were kept (migration 0007).
	Receipt Receipt
}

// Receipt is the enclave's signature over a key as the upstream returned
// it, kept so that the key can be verified again before every use, by
// recoveryd and by its callers.
type Receipt struct {
	// Signature is the standard base64 of the ES256 signature.
	Signature string
	// SignedPayload is the signed bytes exactly as received.
	SignedPayload string
	// SigningKeyID is the kid of the verification key it verified against
	// ("" for a PEM key without one).
	SigningKeyID string
}

// maxReceiptLen bounds each field of a receipt: a signed payload with the
// five fields recoveryd binds is under 1.5 KiB for an RSA-4096 key.
const maxReceiptLen = 8192

// AssignmentState is the state of the (user, customer) row found or made
// by ReserveAssignment.
type AssignmentState int

// Assignment states.
const (
	// AssignmentReserved: this call inserted a pending row and owns it
	// (Reservation.Token); call upstream, then Complete, Release or Fail.
	AssignmentReserved AssignmentState = iota + 1
	// AssignmentRecorded: a verified key is recorded (Reservation.Key).
	AssignmentRecorded
	// AssignmentInProgress: another request holds a live reservation.
	AssignmentInProgress
	// AssignmentUnknown: an earlier reservation's outcome is unknown (its
	// lease expired, or its upstream call's response was lost); upstream may
	// hold a key we never saw. Needs an operator.
	AssignmentUnknown
	// AssignmentUntrusted: upstream assigned a key whose enclave signature
	// or binding failed verification; nothing usable is recorded. Needs an
	// operator.
	AssignmentUntrusted
	// AssignmentElsewhere: upstream answered 409 with no local record: the
	// key was assigned outside this registry. Needs an operator.
	AssignmentElsewhere
	// AssignmentOrphaned: our own upstream call assigned a key whose answer
	// was lost, and the retry met the upstream's 409; the upstream holds a
	// key this registry never saw. Needs an operator.
	AssignmentOrphaned
	// AssignmentResolving: the pair's outcome was unknown and the
	// reconciler (or an operator's ResolveAssignment) holds it while it
	// re-sends the assignment.
	AssignmentResolving
)

// String names the state for logs and spans.
func (s AssignmentState) String() string {
	switch s {
	case AssignmentReserved:
		return "reserved"
	case AssignmentRecorded:
		return "recorded"
	case AssignmentInProgress:
		return "in_progress"
	case AssignmentUnknown:
		return "unknown"
	case AssignmentUntrusted:
		return "untrusted"
	case AssignmentElsewhere:
		return "elsewhere"
	case AssignmentOrphaned:
		return "orphaned"
	case AssignmentResolving:
		return "resolving"
	default:
		return fmt.Sprintf("AssignmentState(%d)", int(s))
	}
}

// AssignmentReservation is the result of ReserveAssignment.
type AssignmentReservation struct {
	State AssignmentState
	// Token identifies the reservation (AssignmentReserved only).
	Token string
	// Terms are the terms recorded for the pair (every state but Reserved).
	Terms KeyTerms
	// Key is the recorded key (AssignmentRecorded only).
	Key *Key
	// Reason is the recorded failure reason (Unknown, Untrusted, Elsewhere,
	// Orphaned).
	Reason string
	// ResolveAfter is when the reconciler may next re-send an unknown
	// pair's assignment (AssignmentUnknown only; zero: at its next pass).
	ResolveAfter time.Time
}

// Values of keys.state.
const (
	keyPending   = "pending"
	keyAssigned  = "assigned"
	keyUnknown   = "unknown"
	keyUntrusted = "untrusted"
	keyElsewhere = "elsewhere"
	keyOrphaned  = "orphaned"
)

// maxPublicKeyHexLen bounds a public key: RSA-4096 SubjectPublicKeyInfo DER
// is about 1,100 hex characters; this leaves room for RSA-8192.
const maxPublicKeyHexLen = 4096

// maxReserveAttempts bounds how often a reservation re-reads a row that
// another process changed between two statements (PostgreSQL only: there a
// conflicting row can be released before it is read).
const maxReserveAttempts = 5

const keyColumns = `id, user_identifier, customer_id, customer_name, package_id, package_name,
	key_environment, caller, state, reason, reservation_token, reserved_at,
	key_id, public_key_hex, fingerprint, assigned_at, signature, signed_payload, signing_key_id`

// The SQL of ReserveAssignment, GetKey and GetKeyByPublicKey, prepared once
// per Store (statements.go).
const (
	// reserveKeySQL inserts a pending row unless the pair has one; the
	// pair's UNIQUE constraint, not a prior read, decides who reserves.
	reserveKeySQL = `
		INSERT INTO keys (user_identifier, customer_id, customer_name, package_id, package_name,
			key_environment, caller, state, reservation_token, reserved_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9)
		ON CONFLICT (user_identifier, customer_id) DO NOTHING
		RETURNING id`
	findKeySQL        = `SELECT ` + keyColumns + ` FROM keys WHERE user_identifier = $1 AND customer_id = $2`
	keyByIDSQL        = `SELECT ` + keyColumns + ` FROM keys WHERE key_id = $1 AND state = 'assigned'`
	keyByPublicKeySQL = `SELECT ` + keyColumns + ` FROM keys WHERE public_key_hex = $1 AND state = 'assigned'`
)

// keyRow is one row of keys, as scanned.
type keyRow struct {
	id          int64
	terms       KeyTerms
	state       string
	reason      string
	token       sql.NullString
	reservedAt  dbTime
	keyID       sql.NullString
	publicKey   sql.NullString
	fingerprint sql.NullString
	assignedAt  dbTime
	receipt     [3]sql.NullString // signature, signed_payload, signing_key_id
}

func scanKeyRow(sc interface{ Scan(...any) error }) (keyRow, error) {
	var r keyRow
	err := sc.Scan(&r.id, &r.terms.UserIdentifier, &r.terms.CustomerID, &r.terms.CustomerName,
		&r.terms.PackageID, &r.terms.PackageName, &r.terms.KeyEnvironment, &r.terms.Caller,
		&r.state, &r.reason, &r.token, &r.reservedAt,
		&r.keyID, &r.publicKey, &r.fingerprint, &r.assignedAt,
		&r.receipt[0], &r.receipt[1], &r.receipt[2])
	return r, err
}

// key is the recorded key of an assigned row.
func (r keyRow) key() *Key {
	return &Key{
		KeyTerms:     r.terms,
		KeyID:        r.keyID.String,
		PublicKeyHex: r.publicKey.String,
		Fingerprint:  r.fingerprint.String,
		AssignedAt:   r.assignedAt.Time,
		Receipt: Receipt{
			Signature:     r.receipt[0].String,
			SignedPayload: r.receipt[1].String,
			SigningKeyID:  r.receipt[2].String,
		},
	}
}

func checkTerms(t KeyTerms) error {
	for _, f := range []struct {
		name, value string
		required    bool
	}{
		{"user_identifier", t.UserIdentifier, true},
		{"customer_id", t.CustomerID, true},
		{"customer_name", t.CustomerName, false},
		{"package_id", t.PackageID, false},
		{"package_name", t.PackageName, false},
		{"caller", t.Caller, false},
	} {
		if err := checkText(f.name, f.value, f.required); err != nil {
			return err
		}
	}
	if t.KeyEnvironment != "HOT" && t.KeyEnvironment != "COLD" {
		return fmt.Errorf(`%w: key_environment must be "HOT" or "COLD"`, ErrInvalidArgument)
	}
	return nil
}

// ReserveAssignment finds or creates the row for (terms.UserIdentifier,
// terms.CustomerID) in one transaction. A pending row older than lease
// becomes AssignmentUnknown.
//
// Exactly one of any number of concurrent callers (in any process sharing
// the database) gets AssignmentReserved: the insert relies on the pair's
// UNIQUE constraint, not on a prior read.
func (s *Store) ReserveAssignment(ctx context.Context, terms KeyTerms, lease time.Duration) (res AssignmentReservation, err error) {
	ctx, end := s.tel.start(ctx, "ReserveAssignment")
	defer func() { end(err, res.State.String()) }()

	if err := checkTerms(terms); err != nil {
		return AssignmentReservation{}, err
	}
	if lease <= 0 {
		return AssignmentReservation{}, fmt.Errorf("%w: lease must be positive", ErrInvalidArgument)
	}
	// A pair whose key is recorded is answered from the read pool: a repeat
	// takes no write transaction (on SQLite, no turn of its one writer). An
	// assigned row is final, so what the read finds is what the write
	// transaction would; anything else, or a failed read, goes the write
	// way.
	row, err := scanKeyRow(s.stmts.findKeyRead.queryRow(ctx, terms.UserIdentifier, terms.CustomerID))
	if err == nil && row.state == keyAssigned {
		return AssignmentReservation{Terms: row.terms, Reason: row.reason, State: AssignmentRecorded, Key: row.key()}, nil
	}
	for range maxReserveAttempts {
		var done bool
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			var err error
			res, done, err = s.reserveAssignment(ctx, tx, terms, lease)
			return err
		})
		if err != nil {
			return AssignmentReservation{}, err
		}
		if done {
			return res, nil
		}
	}
	return AssignmentReservation{}, fmt.Errorf("registry: reserve assignment: the row changed under %d attempts", maxReserveAttempts)
}

// reserveAssignment is one attempt; done is false when the row it found
// changed before it could act, and the caller should try again.
func (s *Store) reserveAssignment(ctx context.Context, tx *sql.Tx, terms KeyTerms, lease time.Duration) (res AssignmentReservation, done bool, err error) {
	now := s.now()
	token := newToken()
	var id int64
	err = s.stmts.reserveKey.queryRowTx(ctx, tx,
		terms.UserIdentifier, terms.CustomerID, terms.CustomerName, terms.PackageID, terms.PackageName,
		terms.KeyEnvironment, terms.Caller, token, s.dialect.timeArg(now),
	).Scan(&id)
	switch {
	case err == nil:
		return AssignmentReservation{State: AssignmentReserved, Token: token}, true, nil
	case !errors.Is(err, sql.ErrNoRows):
		return res, false, fmt.Errorf("registry: reserve assignment: %w", err)
	}

	// NOTE: a separate statement, so that on PostgreSQL (READ COMMITTED) it
	// sees the row whose commit the INSERT waited for.
	row, err := scanKeyRow(s.stmts.findKey.queryRowTx(ctx, tx, terms.UserIdentifier, terms.CustomerID))
	if errors.Is(err, sql.ErrNoRows) {
		return res, false, nil // released since the INSERT: try again
	}
	if err != nil {
		return res, false, fmt.Errorf("registry: reserve assignment: %w", err)
	}

	res = AssignmentReservation{Terms: row.terms, Reason: row.reason}
	switch row.state {
	case keyAssigned:
		res.State, res.Key = AssignmentRecorded, row.key()
	case keyUnknown:
		res.State = AssignmentUnknown
		attempts, after, err := s.resolution(ctx, tx, row.id)
		if err != nil {
			return res, false, err
		}
		if attempts > 0 {
			res.ResolveAfter = after
		}
	case keyUntrusted:
		res.State = AssignmentUntrusted
	case keyElsewhere:
		res.State = AssignmentElsewhere
	case keyOrphaned:
		res.State = AssignmentOrphaned
	case keyPending:
		if now.Sub(row.reservedAt.Time) < lease {
			res.State = AssignmentInProgress
			if attempts, _, err := s.resolution(ctx, tx, row.id); err != nil {
				return res, false, err
			} else if attempts > 0 {
				res.State = AssignmentResolving
			}
			return res, true, nil
		}
		reason := staleReason(lease)
		r, err := tx.ExecContext(ctx, `
			UPDATE keys SET state = 'unknown', reason = $1, reservation_token = NULL
			WHERE id = $2 AND state = 'pending' AND reservation_token = $3`,
			reason, row.id, row.token.String)
		if err != nil {
			return res, false, fmt.Errorf("registry: expire assignment reservation: %w", err)
		}
		if n, err := r.RowsAffected(); err != nil || n != 1 {
			return res, false, err // completed or released meanwhile: look again
		}
		s.log.WarnContext(ctx, "registry: assignment reservation expired; upstream outcome unknown",
			"customer_id", row.terms.CustomerID, "reserved_at", row.reservedAt.Time, "lease", lease)
		res.State, res.Reason = AssignmentUnknown, reason
	default:
		return res, false, fmt.Errorf("registry: key row in unexpected state %q", row.state)
	}
	return res, true, nil
}

// CompleteAssignment records the verified key on the reservation.
//
// The terms recorded at reservation stand (key.KeyTerms is not read);
// key.AssignedAt defaults to now. A key id or public key already recorded
// for another pair is ErrDuplicate and leaves the reservation held.
func (s *Store) CompleteAssignment(ctx context.Context, token string, key Key) (err error) {
	ctx, end := s.tel.start(ctx, "CompleteAssignment")
	defer func() { end(err, "") }()

	if err := checkToken(token); err != nil {
		return err
	}
	if err := checkText("key_id", key.KeyID, true); err != nil {
		return err
	}
	if len(key.PublicKeyHex) > maxPublicKeyHexLen {
		return fmt.Errorf("%w: public_key_hex is longer than %d characters", ErrInvalidArgument, maxPublicKeyHexLen)
	}
	publicKey, err := lowerHex("public_key_hex", key.PublicKeyHex, 0)
	if err != nil {
		return err
	}
	fingerprint, err := lowerHex("fingerprint", key.Fingerprint, 64)
	if err != nil {
		return err
	}
	assignedAt := key.AssignedAt.UTC().Truncate(time.Microsecond)
	if key.AssignedAt.IsZero() {
		assignedAt = s.now()
	}
	if err := checkReceipt(key.Receipt); err != nil {
		return err
	}

	return s.inTx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `
			UPDATE keys SET state = 'assigned', key_id = $1, public_key_hex = $2, fingerprint = $3,
				assigned_at = $4, reservation_token = NULL, reason = '',
				signature = $6, signed_payload = $7, signing_key_id = $8
			WHERE reservation_token = $5 AND state = 'pending'`,
			key.KeyID, publicKey, fingerprint, s.dialect.timeArg(assignedAt), token,
			nullable(key.Receipt.Signature), nullable(key.Receipt.SignedPayload), nullable(key.Receipt.SigningKeyID))
		if s.dialect.uniqueViolation(err) {
			return fmt.Errorf("%w: key id or public key is recorded for another assignment", ErrDuplicate)
		}
		return expectOneRow(r, err, "complete assignment")
	})
}

// checkReceipt refuses receipt fields the backends would store
// differently. The signed payload holds the whole public key, so it has a
// bound of its own, above checkText's. An empty receipt is stored as none:
// whether a key without one may be used is the service's decision (it
// refuses it).
func checkReceipt(r Receipt) error {
	for _, f := range []struct{ name, value string }{
		{"receipt signature", r.Signature},
		{"receipt signed payload", r.SignedPayload},
		{"receipt signing key id", r.SigningKeyID},
	} {
		switch {
		case len(f.value) > maxReceiptLen:
			return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalidArgument, f.name, maxReceiptLen)
		case !utf8.ValidString(f.value) || strings.ContainsRune(f.value, 0):
			return fmt.Errorf("%w: %s is not valid UTF-8 without NUL", ErrInvalidArgument, f.name)
		}
	}
	return nil
}

// ReleaseAssignment deletes the reservation: upstream certainly assigned
// nothing, so a later request may try again.
func (s *Store) ReleaseAssignment(ctx context.Context, token string) (err error) {
	ctx, end := s.tel.start(ctx, "ReleaseAssignment")
	defer func() { end(err, "") }()

	if err := checkToken(token); err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx,
			`DELETE FROM keys WHERE reservation_token = $1 AND state = 'pending'`, token)
		return expectOneRow(r, err, "release assignment")
	})
}

// FailAssignment parks the reservation in state (Unknown, Untrusted,
// Elsewhere or Orphaned) with a reason for operators; nothing usable is recorded.
//
// Later ReserveAssignment calls for the pair report that state and reason
// instead of calling upstream again. The reason is stored as given, except
// that invalid UTF-8 and NUL are replaced and it is cut at 2 KiB.
func (s *Store) FailAssignment(ctx context.Context, token string, state AssignmentState, reason string) (err error) {
	ctx, end := s.tel.start(ctx, "FailAssignment")
	defer func() { end(err, state.String()) }()

	if err := checkToken(token); err != nil {
		return err
	}
	var column string
	switch state {
	case AssignmentUnknown:
		column = keyUnknown
	case AssignmentUntrusted:
		column = keyUntrusted
	case AssignmentElsewhere:
		column = keyElsewhere
	case AssignmentOrphaned:
		column = keyOrphaned
	default:
		return fmt.Errorf("%w: an assignment can fail only as unknown, untrusted, elsewhere or orphaned, not %s", ErrInvalidArgument, state)
	}
	reason = operatorReason(reason)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `
			UPDATE keys SET state = $1, reason = $2, reservation_token = NULL
			WHERE reservation_token = $3 AND state = 'pending'`,
			column, reason, token)
		return expectOneRow(r, err, "fail assignment")
	})
}

// GetKey returns a recorded key by id (ErrNotFound).
func (s *Store) GetKey(ctx context.Context, keyID string) (k *Key, err error) {
	ctx, end := s.tel.start(ctx, "GetKey")
	defer func() { end(err, "") }()

	if err := checkText("key_id", keyID, true); err != nil {
		return nil, err
	}
	return getKey(s.stmts.keyByID.queryRow(ctx, keyID))
}

// GetKeyByPublicKey returns a recorded key by hex public key, any case (ErrNotFound).
func (s *Store) GetKeyByPublicKey(ctx context.Context, publicKeyHex string) (k *Key, err error) {
	ctx, end := s.tel.start(ctx, "GetKeyByPublicKey")
	defer func() { end(err, "") }()

	if len(publicKeyHex) > maxPublicKeyHexLen {
		return nil, fmt.Errorf("%w: public_key_hex is longer than %d characters", ErrInvalidArgument, maxPublicKeyHexLen)
	}
	publicKey, err := lowerHex("public_key_hex", publicKeyHex, 0)
	if err != nil {
		return nil, err
	}
	return getKey(s.stmts.keyByPublicKey.queryRow(ctx, publicKey))
}

// getKey scans the recorded key a lookup found.
func getKey(r *sql.Row) (*Key, error) {
	row, err := scanKeyRow(r)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no recorded key", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: get key: %w", err)
	}
	return row.key(), nil
}

// expectOneRow turns the result of a statement addressed by reservation
// token into ErrReservationLost when it touched no row.
func expectOneRow(r sql.Result, err error, op string) error {
	if err != nil {
		return fmt.Errorf("registry: %s: %w", op, err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return fmt.Errorf("registry: %s: %w", op, err)
	}
	if n == 0 {
		return ErrReservationLost
	}
	return nil
}
