package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// statement is one SQL statement of a hot path. Where the dialect reuses
// prepared statements (SQLite), it is prepared once when the Store opens and
// every call binds new arguments to it, instead of making the database parse
// and plan the same text again: before, a quarter of the CPU of a repeat
// AssignKey went to SQLite compiling SQL (docs/benchmarks.md).
type statement struct {
	// db is the pool the statement runs on; a statement run inside a
	// transaction must be on the pool the transaction came from.
	db   *sql.DB
	text string
	// prepared is nil when the text is sent each time: on PostgreSQL, and
	// on a Store opened without the registry's schema (tests).
	prepared *sql.Stmt
}

// queryRow runs the statement on its pool, outside a transaction.
func (st *statement) queryRow(ctx context.Context, args ...any) *sql.Row {
	if st.prepared == nil {
		return st.db.QueryRowContext(ctx, st.text, args...)
	}
	return st.prepared.QueryRowContext(ctx, args...)
}

// queryRowTx runs the statement in tx, which must come from the statement's
// pool.
//
// NOTE: tx.StmtContext reuses the statement already prepared on the
// transaction's connection (on SQLite there is one writer connection, so it
// is always the one prepared at open) and prepares it there only the first
// time that connection runs it.
func (st *statement) queryRowTx(ctx context.Context, tx *sql.Tx, args ...any) *sql.Row {
	if st.prepared == nil {
		return tx.QueryRowContext(ctx, st.text, args...)
	}
	return tx.StmtContext(ctx, st.prepared).QueryRowContext(ctx, args...) //nolint:sqlclosecheck // tx's Commit or Rollback closes the statements it made
}

// execTx runs the statement in tx, as queryRowTx does, for its result.
func (st *statement) execTx(ctx context.Context, tx *sql.Tx, args ...any) (sql.Result, error) {
	if st.prepared == nil {
		return tx.ExecContext(ctx, st.text, args...)
	}
	return tx.StmtContext(ctx, st.prepared).ExecContext(ctx, args...) //nolint:sqlclosecheck // tx's Commit or Rollback closes the statements it made
}

// statements are the Store's hot-path statements: what a repeat AssignKey,
// a key lookup, a backup and every call's audit record run every time.
// Rarer statements (completing, releasing or failing a reservation,
// expiring a lease, listings) are sent as text.
type statements struct {
	reserveKey     statement // ReserveAssignment's INSERT
	findKey        statement // ReserveAssignment's SELECT of the pair
	findKeyRead    statement // the same, on the read pool: a repeat's fast path
	keyByID        statement // GetKey
	keyByPublicKey statement // GetKeyByPublicKey
	reserveBackup  statement // ReserveBackup's INSERT
	findBackup     statement // ReserveBackup's SELECT of the idempotency row
	backupByRowID  statement // ReserveBackup's SELECT of a recorded backup
	backupKey      statement // CompleteBackup's and RecordBackup's key check
	completeBackup statement // CompleteBackup's UPDATE
	recordBackup   statement // RecordBackup's INSERT
	appendAudit    statement // AppendAudit's INSERT, once per audit record
}

// newStatements returns the statements as text on their pools; prepare
// prepares them.
func newStatements(write, read *sql.DB) statements {
	return statements{
		reserveKey:     statement{db: write, text: reserveKeySQL},
		findKey:        statement{db: write, text: findKeySQL},
		findKeyRead:    statement{db: read, text: findKeySQL},
		keyByID:        statement{db: read, text: keyByIDSQL},
		keyByPublicKey: statement{db: read, text: keyByPublicKeySQL},
		reserveBackup:  statement{db: write, text: reserveBackupSQL},
		findBackup:     statement{db: write, text: findBackupSQL},
		backupByRowID:  statement{db: write, text: backupByRowIDSQL},
		backupKey:      statement{db: write, text: backupKeySQL},
		completeBackup: statement{db: write, text: completeBackupSQL},
		recordBackup:   statement{db: write, text: recordBackupSQL},
		appendAudit:    statement{db: write, text: appendAuditSQL},
	}
}

func (ss *statements) all() []*statement {
	return []*statement{
		&ss.reserveKey, &ss.findKey, &ss.findKeyRead, &ss.keyByID, &ss.keyByPublicKey,
		&ss.reserveBackup, &ss.findBackup, &ss.backupByRowID, &ss.backupKey,
		&ss.completeBackup, &ss.recordBackup, &ss.appendAudit,
	}
}

// prepare prepares every statement on its pool. On failure it closes those
// it prepared; the Store is then not used.
func (ss *statements) prepare(ctx context.Context) error {
	for _, st := range ss.all() {
		p, err := st.db.PrepareContext(ctx, st.text)
		if err != nil {
			_ = ss.close()
			return fmt.Errorf("registry: prepare statements: %w", err)
		}
		st.prepared = p
	}
	return nil
}

// close closes the prepared statements on every connection they were
// prepared on. It leaves the fields set, so that a call racing Close reads
// no changed field and fails as a call on a closed pool would.
func (ss *statements) close() error {
	var err error
	for _, st := range ss.all() {
		if st.prepared != nil {
			err = errors.Join(err, st.prepared.Close())
		}
	}
	return err
}
