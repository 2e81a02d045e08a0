// Package audit is recoveryd's audit writer: it appends one record per call
// to this process's hash chain in the registry, committing every record
// waiting in one transaction (group commit), anchors the chains of all
// replicas together with periodic checkpoints, and prunes records past their
// retention after exporting them.
//
// The chain itself (hashing, verification, storage) is the registry's
// (registry.AppendAudit and friends); this package decides when to write.
package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/walletprovider/recoveryservice/service/registry"
)

// Store is what the writer needs of the registry.
type Store interface {
	AppendAuditWrites(ctx context.Context, c *registry.AuditChain, entries []registry.AuditEntry, durable bool) ([]error, error)
	CheckpointAudit(ctx context.Context, c *registry.AuditChain, since time.Time) (registry.AuditEvent, error)
	PruneAudit(ctx context.Context, c *registry.AuditChain, before time.Time, export io.Writer, sync func() error) (registry.AuditPruned, error)
}

// Defaults.
const (
	// DefaultQueueSize is how many records may wait for their commit; a
	// writer with this many waiting is "too far behind".
	DefaultQueueSize = 8192
	// DefaultMaxBatch bounds one transaction.
	DefaultMaxBatch = 512
	// DefaultLinger is how long a batch with nobody waiting on it gathers
	// more records before it is committed: one commit (one fsync, and one
	// turn of SQLite's single writer, which the registry's own writes
	// queue behind) per linger instead of per call. A batch that a write
	// waits on is committed at once.
	DefaultLinger = 5 * time.Millisecond
	// DefaultCheckpointInterval is how often a checkpoint names the other
	// chains' heads.
	DefaultCheckpointInterval = time.Minute
	// DefaultPruneInterval is how often records past their retention are
	// exported and pruned.
	DefaultPruneInterval = time.Hour
	// checkpointLookback: a checkpoint names the chains with a record this
	// recent (a record's time is its call's start; calls run for at most
	// about 11 minutes), besides the interval itself.
	checkpointLookback = time.Hour
	// maxRetryDelay bounds the wait between two attempts at a failed batch.
	maxRetryDelay = 5 * time.Second
)

// ErrUnavailable is the writer's refusal of a record: it is failing (its
// last commit failed), too far behind (the queue is full) or closed.
var ErrUnavailable = errors.New("audit: writer unavailable")

// Config configures a Writer.
type Config struct {
	Store Store
	// WriterID names this process's chain; "" makes one from the host name
	// and 48 random bits, so every start has a chain of its own.
	WriterID           string
	QueueSize          int
	MaxBatch           int
	Linger             time.Duration
	CheckpointInterval time.Duration
	// Retention, when positive, is the age past which records are exported
	// to ExportDir and pruned, every PruneInterval.
	Retention     time.Duration
	PruneInterval time.Duration
	ExportDir     string
	Logger        *slog.Logger
	MeterProvider metric.MeterProvider
	Now           func() time.Time
}

// item is one record waiting, and who waits for its commit (nil: nobody).
// An item with a write commits that write with its record (CommitWrite);
// ctx is then its caller's, which may leave before its turn.
type item struct {
	event registry.AuditEvent
	done  chan error
	write *registry.TxWrite
	ctx   context.Context
}

// Writer appends records to this process's chain.
type Writer struct {
	cfg   Config
	chain *registry.AuditChain
	log   *slog.Logger
	queue chan item

	written metric.Int64Counter
	failed  metric.Int64Counter

	mu      sync.Mutex
	closed  bool
	failing error // the last commit's error, nil once one succeeds

	// stop aborts a failing batch's retries when Close runs out of time;
	// pruneQuit ends the prune loop at Close.
	stop      chan struct{}
	pruneQuit chan struct{}
	stopped   sync.WaitGroup
	pruneMu   sync.Mutex
}

// Start builds the writer and starts its goroutines; Close stops them.
func Start(cfg Config) (*Writer, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: no store")
	}
	if cfg.WriterID == "" {
		cfg.WriterID = NewWriterID()
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.Linger <= 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = DefaultPruneInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MeterProvider == nil {
		cfg.MeterProvider = otel.GetMeterProvider()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Retention > 0 && cfg.ExportDir == "" {
		return nil, errors.New("audit: a retention needs an export directory")
	}
	chain, err := registry.NewAuditChain(cfg.WriterID)
	if err != nil {
		return nil, err
	}
	meter := cfg.MeterProvider.Meter("github.com/walletprovider/recoveryservice/service/audit")
	written, err := meter.Int64Counter("recovery.audit.records.written",
		metric.WithDescription("Audit records committed to the registry."), metric.WithUnit("{record}"))
	if err != nil {
		otel.Handle(err)
	}
	failed, err := meter.Int64Counter("recovery.audit.records.failed",
		metric.WithDescription("Audit records not written: refused (writer failing, too far behind or closed, by reason) or in a failed commit attempt (reason commit; retried, but for a write's record, which fails with its write)."),
		metric.WithUnit("{record}"))
	if err != nil {
		otel.Handle(err)
	}
	w := &Writer{
		cfg: cfg, chain: chain, queue: make(chan item, cfg.QueueSize), stop: make(chan struct{}), pruneQuit: make(chan struct{}),
		log: cfg.Logger.With("component", "audit", "writer_id", cfg.WriterID), written: written, failed: failed,
	}
	w.stopped.Add(1)
	go w.run()
	if cfg.Retention > 0 {
		w.stopped.Add(1)
		go w.pruneLoop()
	}
	w.log.Info("audit writer started", "retention", cfg.Retention.String())
	return w, nil
}

// NewWriterID is the host name (cut to 64 bytes) and 48 random bits.
func NewWriterID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "recoveryd"
	}
	if len(host) > 64 {
		host = host[:64]
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// WriterID is this process's chain.
func (w *Writer) WriterID() string { return w.cfg.WriterID }

// Healthy is nil when a record submitted now would be accepted and the
// writer's commits are succeeding; else an error wrapping ErrUnavailable.
func (w *Writer) Healthy() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed:
		return fmt.Errorf("%w: closed", ErrUnavailable)
	case w.failing != nil:
		return fmt.Errorf("%w: its last commit failed: %w", ErrUnavailable, w.failing)
	case len(w.queue) >= cap(w.queue):
		return fmt.Errorf("%w: %d records already wait for their commit", ErrUnavailable, len(w.queue))
	}
	return nil
}

// Submit queues e without waiting for its commit.
func (w *Writer) Submit(e registry.AuditEvent) error {
	return w.enqueue(item{event: e})
}

// SubmitAndWait queues e and waits until it is committed (nil), its commit
// failed, or ctx ends. A record whose commit failed stays queued and is
// retried: the error says this call cannot count on it.
func (w *Writer) SubmitAndWait(ctx context.Context, e registry.AuditEvent) error {
	it := item{event: e, done: make(chan error, 1)}
	if err := w.enqueue(it); err != nil {
		return err
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for the commit: %w", ErrUnavailable, ctx.Err())
	}
}

// CommitWrite commits w, a registry write, and e, the audit record of the
// call making it, in one durable transaction, and returns once it has
// committed (nil) or failed: the write's own error (a reservation lost, a
// duplicate) as the registry returned it, or an error wrapping
// ErrUnavailable when the record could not go with it (the writer
// refused it, or the transaction or the record's insert failed). Either
// way a failed write is not committed, then or later.
//
// NOTE: once queued it waits for its commit whatever ctx says, as the
// registry's own writes do: a caller told "failed" must not find the write
// committed. A write whose ctx ended before its turn is not run.
func (w *Writer) CommitWrite(ctx context.Context, e registry.AuditEvent, tw registry.TxWrite) error {
	it := item{event: e, done: make(chan error, 1), write: &tw, ctx: ctx}
	if err := w.enqueue(it); err != nil {
		return err
	}
	return <-it.done
}

// Offer queues e unless the queue is at least half full: for records of
// calls refused before their caller was authenticated, so that a flood of
// them can never make the writer too far behind for authenticated calls.
// A record not taken is counted failed (reason "shed").
func (w *Writer) Offer(e registry.AuditEvent) error {
	return w.enqueueBelow(item{event: e}, cap(w.queue)/2, "shed")
}

func (w *Writer) enqueue(it item) error {
	return w.enqueueBelow(it, cap(w.queue), "behind")
}

// enqueueBelow queues it when fewer than limit records wait.
func (w *Writer) enqueueBelow(it item, limit int, refusal string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) >= limit && !w.closed {
		w.countFailed(refusal, 1)
		return fmt.Errorf("%w: %d records already wait for their commit", ErrUnavailable, len(w.queue))
	}
	if w.closed {
		w.countFailed("closed", 1)
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	select {
	case w.queue <- it:
		return nil
	default:
		w.countFailed("behind", 1)
		return fmt.Errorf("%w: %d records already wait for their commit", ErrUnavailable, cap(w.queue))
	}
}

func (w *Writer) countFailed(reason string, n int) {
	w.failed.Add(context.Background(), int64(n), metric.WithAttributes(attribute.String("reason", reason)))
}

// run commits what waits, in batches, and checkpoints now and then.
func (w *Writer) run() {
	defer w.stopped.Done()
	ticker := time.NewTicker(w.cfg.CheckpointInterval)
	defer ticker.Stop()
	batch := make([]item, 0, w.cfg.MaxBatch)
	for {
		select {
		case it, ok := <-w.queue:
			if !ok {
				w.checkpoint()
				return
			}
			batch = append(batch[:0], it)
			batch = w.fill(batch)
			batch = w.linger(batch)
			w.commit(batch)
		case <-ticker.C:
			w.checkpoint()
		}
	}
}

// fill adds what else waits, up to MaxBatch, without blocking.
func (w *Writer) fill(batch []item) []item {
	for len(batch) < w.cfg.MaxBatch {
		select {
		case it, ok := <-w.queue:
			if !ok {
				return batch
			}
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// linger gathers more records for up to Linger, unless someone waits on
// the batch (a write's record) or it is full.
func (w *Writer) linger(batch []item) []item {
	waited := func() bool {
		for i := range batch {
			if batch[i].done != nil {
				return true
			}
		}
		return false
	}
	if waited() || len(batch) >= w.cfg.MaxBatch {
		return batch
	}
	timer := time.NewTimer(w.cfg.Linger)
	defer timer.Stop()
	for len(batch) < w.cfg.MaxBatch {
		select {
		case it, ok := <-w.queue:
			if !ok {
				return batch
			}
			batch = append(batch, it)
			if it.done != nil {
				return w.fill(batch)
			}
		case <-timer.C:
			return batch
		}
	}
	return batch
}

// commit appends batch in one transaction, retrying until it succeeds or
// the writer is closed; waiters learn of the first failure at once. Writes
// are never retried: a write's caller is told of its failure and the write
// leaves the batch, so it cannot commit after all.
func (w *Writer) commit(batch []item) {
	batch = w.dropDeparted(batch)
	delay := 50 * time.Millisecond
	for attempt := 0; len(batch) > 0; attempt++ {
		entries := make([]registry.AuditEntry, len(batch))
		durable := false
		for i, it := range batch {
			entries[i] = registry.AuditEntry{Event: it.event, Write: it.write}
			durable = durable || it.done != nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs, err := w.cfg.Store.AppendAuditWrites(ctx, w.chain, entries, durable)
		cancel()
		w.mu.Lock()
		w.failing = err
		w.mu.Unlock()
		if err == nil {
			w.committed(batch, errs)
			if attempt > 0 {
				w.log.Warn("audit writer recovered", "attempts", attempt+1, "records", len(batch))
			}
			return
		}
		w.countFailed("commit", len(batch))
		if attempt == 0 {
			w.log.Error("audit records could not be committed: retrying", "records", len(batch), "error", err)
			notify(batch, fmt.Errorf("%w: commit failed: %w", ErrUnavailable, err))
		}
		batch = withoutWrites(batch)
		select {
		case <-w.stop:
			// NOTE: a last attempt was just made; what is left is lost and
			// counted failed, as the log says.
			w.log.Error("audit writer closed with records it could not commit", "records", len(batch))
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

// dropDeparted answers and removes the writes whose caller left before
// their turn: they are not run.
func (w *Writer) dropDeparted(batch []item) []item {
	kept := batch[:0]
	for _, it := range batch {
		if it.write != nil {
			if err := it.ctx.Err(); err != nil {
				it.done <- err
				continue
			}
		}
		kept = append(kept, it)
	}
	return kept
}

// committed answers a committed batch's waiters: a write that failed on
// its own gets its error, and its record was not written.
func (w *Writer) committed(batch []item, errs []error) {
	written := 0
	for i := range batch {
		err := errs[i]
		if errors.Is(err, registry.ErrAuditAppend) {
			w.log.Error("an audit record and the write it records could not be committed", "error", err)
			w.countFailed("commit", 1)
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if err == nil {
			written++
		}
		if batch[i].done != nil {
			batch[i].done <- err
			batch[i].done = nil
		}
	}
	w.written.Add(context.Background(), int64(written))
}

// withoutWrites is batch less its writes (their callers are answered).
func withoutWrites(batch []item) []item {
	kept := batch[:0]
	for _, it := range batch {
		if it.write == nil {
			kept = append(kept, it)
		}
	}
	return kept
}

func notify(batch []item, err error) {
	for i := range batch {
		if batch[i].done != nil {
			batch[i].done <- err
			batch[i].done = nil
		}
	}
}

// checkpoint appends a checkpoint naming the other chains' heads and logs
// this chain's own head, so that the log (shipped elsewhere) anchors it too.
func (w *Writer) checkpoint() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	since := w.cfg.Now().Add(-w.cfg.CheckpointInterval - checkpointLookback)
	cp, err := w.cfg.Store.CheckpointAudit(ctx, w.chain, since)
	if err != nil {
		w.log.Error("audit checkpoint failed", "error", err)
		return
	}
	w.log.Info("audit checkpoint", "seq", cp.Seq, "hash", cp.Hash, "chains_named", len(cp.Anchors))
}

func (w *Writer) pruneLoop() {
	defer w.stopped.Done()
	ticker := time.NewTicker(w.cfg.PruneInterval)
	defer ticker.Stop()
	for {
		select {
		case <-w.pruneQuit:
			return
		case <-ticker.C:
			ctx, cancel := context.WithTimeout(context.Background(), w.cfg.PruneInterval)
			if _, err := w.Prune(ctx); err != nil {
				w.log.Error("audit retention prune failed: the records stay", "error", err)
			}
			cancel()
		}
	}
}

// exportFileMode keeps an export to the service's own user.
const exportFileMode = 0o600

// Prune exports the records older than the retention to a new JSON-lines
// file under ExportDir (with their chain hashes), makes it durable, and
// only then deletes them, leaving a prune record so the rest still
// verifies. It returns the export's path ("" when nothing was old enough).
func (w *Writer) Prune(ctx context.Context) (string, error) {
	if w.cfg.Retention <= 0 {
		return "", errors.New("audit: no retention configured")
	}
	w.pruneMu.Lock()
	defer w.pruneMu.Unlock()
	if err := os.MkdirAll(w.cfg.ExportDir, 0o700); err != nil {
		return "", fmt.Errorf("audit: export directory: %w", err)
	}
	now := w.cfg.Now().UTC()
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	path := filepath.Join(w.cfg.ExportDir, fmt.Sprintf("audit-%s-%s-%s.jsonl",
		now.Format("20060102T150405Z"), w.cfg.WriterID, hex.EncodeToString(nonce[:])))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, exportFileMode) //nolint:gosec // G304: under the operator's data dir
	if err != nil {
		return "", fmt.Errorf("audit: create export: %w", err)
	}
	closed := false
	sync := func() error {
		closed = true
		return errors.Join(f.Sync(), f.Close())
	}
	pruned, err := w.cfg.Store.PruneAudit(ctx, w.chain, now.Add(-w.cfg.Retention), f, sync)
	if !closed {
		_ = f.Close()
	}
	if err != nil || pruned.Records == 0 {
		if pruned.Records == 0 {
			_ = os.Remove(path)
			path = ""
		}
		return path, err
	}
	w.log.Info("audit records exported and pruned", "records", pruned.Records, "chains", pruned.Chains, "export", path)
	return path, nil
}

// Close refuses new records, commits those waiting (trying until ctx ends),
// checkpoints once more and stops.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.queue)
	close(w.pruneQuit)
	w.mu.Unlock()
	done := make(chan struct{})
	go func() { w.stopped.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		close(w.stop)
		<-done
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
}
