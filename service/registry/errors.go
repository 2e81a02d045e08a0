package registry

import "errors"

// Errors for errors.Is. Messages name no secrets, tokens or idempotency keys,
// so callers may log them.
var (
	// ErrNotFound: no such key or backup.
	ErrNotFound = errors.New("registry: not found")
	// ErrReservationLost: the reservation token no longer owns a pending row
	// (its lease expired and another request marked it unknown, or it was
	// completed/released already).
	ErrReservationLost = errors.New("registry: reservation no longer held")
	// ErrInvalidPageToken: a page token this registry did not issue.
	ErrInvalidPageToken = errors.New("registry: invalid page token")
	// ErrInvalidArgument: an argument the registry refuses to store or look
	// up (empty identifier, malformed hex, unknown state …). Nothing was
	// changed.
	ErrInvalidArgument = errors.New("registry: invalid argument")
	// ErrDuplicate: a key id, public key or backup id that is already
	// recorded on another row. Nothing was changed; the reservation, if any,
	// is still held.
	ErrDuplicate = errors.New("registry: already recorded on another row")
)
