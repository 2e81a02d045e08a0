package registry

import (
	"context"
	"database/sql"
)

// TxWrite is the statements of one registry write, as a write method (such
// as CompleteBackup) would have committed them in a transaction of its own.
// A write method called under WithCommitHook hands them to the hook, which
// commits them: recoveryd's audit writer commits them in one transaction
// with the audit record of the call that makes the write
// (AppendAuditWrites), or the hook gives them back to CommitWrite.
type TxWrite struct {
	fn func(tx *sql.Tx) error
}

// CommitHook commits a write's statements in the store's place, and returns
// what the write method then returns: nil once they are committed.
type CommitHook func(w TxWrite) error

type commitHookKey struct{}

// WithCommitHook returns ctx under which the store's write methods hand
// their statements to h instead of committing them. It is for the one write
// a call's audit record must commit with; reads are unaffected.
func WithCommitHook(ctx context.Context, h CommitHook) context.Context {
	return context.WithValue(ctx, commitHookKey{}, h)
}

func commitHookFrom(ctx context.Context) CommitHook {
	h, _ := ctx.Value(commitHookKey{}).(CommitHook)
	return h
}

// CommitWrite commits w in a transaction of the store's own, as its write
// method would have without the hook: a hook's way out when the write
// cannot go with its record.
func (s *Store) CommitWrite(ctx context.Context, w TxWrite) error {
	return s.commit(ctx, w.fn)
}
