package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// maxBatch bounds the write transactions one commit carries.
const maxBatch = 64

// batcher is SQLite's group commit. SQLite has one writer at a time and,
// with synchronous(FULL), every commit waits for an fsync; so under
// concurrency the writes queued behind each other, each paying an fsync.
// The batcher runs the write transactions that are waiting when the writer
// comes free in one database transaction, each in its own SAVEPOINT (a
// failing one is rolled back to it, leaving the others), and commits them
// with one fsync. No caller is answered before that commit: a write is
// acknowledged only once it is durable, as before, and a failed commit
// fails every write it carried.
//
// The writes run in arrival order, each seeing the ones before it, exactly
// as if they had committed one after the other. A write whose caller has
// gone before its turn is not run.
type batcher struct {
	db   *sql.DB
	reqs chan *batchReq
	// mu guards closed; senders hold it to read, Close to write.
	mu     sync.RWMutex
	closed bool
	done   chan struct{}
	// commits counts the transactions committed, for tests.
	commits atomic.Int64
}

type batchReq struct {
	ctx    context.Context
	fn     func(tx *sql.Tx) error
	result chan error
}

// errStoreClosed is a write sent after Close.
var errStoreClosed = errors.New("registry: store is closed")

func newBatcher(db *sql.DB) *batcher {
	b := &batcher{db: db, reqs: make(chan *batchReq, maxBatch), done: make(chan struct{})}
	go b.run()
	return b
}

// do runs fn in a write transaction shared with the writes waiting beside
// it, and returns once that transaction has committed (nil) or fn or the
// commit failed.
func (b *batcher) do(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &batchReq{ctx: ctx, fn: fn, result: make(chan error, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return errStoreClosed
	}
	b.reqs <- r
	b.mu.RUnlock()
	// NOTE: always the result, never ctx.Done(): once queued the write may
	// commit, and a caller told "failed" must not find it committed.
	return <-r.result
}

// close stops taking writes and waits for the ones queued to finish.
func (b *batcher) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.reqs)
	}
	b.mu.Unlock()
	<-b.done
}

func (b *batcher) run() {
	defer close(b.done)
	batch := make([]*batchReq, 0, maxBatch)
	for first := range b.reqs {
		batch = append(batch[:0], first)
	gather:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-b.reqs:
				if !ok {
					break gather
				}
				batch = append(batch, r)
			default:
				break gather
			}
		}
		b.commit(batch)
	}
}

// commit runs batch in one transaction and answers each request.
func (b *batcher) commit(batch []*batchReq) {
	results := make([]error, len(batch))
	answer := func() {
		for i, r := range batch {
			r.result <- results[i]
		}
	}
	defer answer()
	// NOTE: the transaction and every statement run on a context no caller
	// can cancel: an interrupted SQLite statement may roll back the whole
	// transaction, every other caller's writes with it.
	ctx := context.Background()
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		for i := range results {
			results[i] = fmt.Errorf("registry: begin: %w", err)
		}
		return
	}
	ran := 0
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = err // the caller left before its turn: not run
			continue
		}
		if len(batch) == 1 {
			results[i] = r.fn(tx)
		} else {
			var fatal error
			results[i], fatal = inSavepoint(ctx, tx, r.fn)
			if fatal != nil {
				// The transaction is in an unknown state (an interrupted
				// statement may have rolled it back whole): nothing of it
				// is committed, and every write it carried fails.
				_ = tx.Rollback()
				for j := range results {
					results[j] = errors.Join(results[j], fatal)
				}
				return
			}
		}
		if results[i] == nil {
			ran++
		}
	}
	if ran == 0 {
		_ = tx.Rollback()
		return
	}
	err = tx.Commit()
	b.commits.Add(1)
	if err != nil {
		for i := range results {
			if results[i] == nil {
				results[i] = fmt.Errorf("registry: commit: %w", err)
			}
		}
	}
}

// inSavepoint runs fn inside a savepoint of tx, rolling tx back to it when
// fn fails, so that fn's writes are kept or undone as a whole. fatal is a
// failure of the savepoint itself, after which tx cannot be trusted.
func inSavepoint(ctx context.Context, tx *sql.Tx, fn func(tx *sql.Tx) error) (err, fatal error) {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT batched_write`); err != nil {
		return nil, fmt.Errorf("registry: savepoint: %w", err)
	}
	err = fn(tx)
	if err != nil {
		if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO batched_write`); rerr != nil {
			return err, fmt.Errorf("registry: rollback to savepoint: %w", rerr)
		}
	}
	if _, rerr := tx.ExecContext(ctx, `RELEASE batched_write`); rerr != nil {
		return err, fmt.Errorf("registry: release savepoint: %w", rerr)
	}
	return err, nil
}
