// Package registry is the durable record of key assignments and backups that
// keeps AssignKey exactly-once per (user identifier, customer) and makes
// backup requests idempotent, on SQLite (embedded default) or PostgreSQL
// (shared by replicas).
//
// Upstream answers a second key assignment with 409 and has no way to read an
// assignment back, so a lost response would orphan the key forever. The
// registry therefore reserves the pair before the upstream call
// (ReserveAssignment) and records the key after (CompleteAssignment); a
// repeat finds the recorded key. The pair's uniqueness is a database
// constraint, so concurrent requests, even on different processes sharing one
// PostgreSQL database, see exactly one AssignmentReserved: the others see
// AssignmentInProgress, then AssignmentRecorded.
//
// A reservation is held for a lease. A pending reservation older than its
// lease is moved to state unknown by the next ReserveAssignment (upstream may
// hold a key nobody saw), and its token stops working (ErrReservationLost).
//
// Backups are recorded by id with their checksum, size, metadata and caller,
// never with plaintext or ciphertext. ReserveBackup/CompleteBackup make a
// request with an idempotency key (scoped by caller) return the recorded
// backup on a repeat.
//
// Schema migrations are embedded, applied in order, each in its own
// transaction, and recorded in schema_migrations; PostgreSQL replicas that
// start together serialise on an advisory lock.
package registry
