package audit

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/service/registry"
)

func openStore(t *testing.T) *registry.Store {
	t.Helper()
	s, err := registry.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "registry.db"),
		registry.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// flakyStore is the real registry with appends that fail while broken is set.
type flakyStore struct {
	*registry.Store
	broken  atomic.Bool
	release chan struct{} // when set, appends wait for it
	entered chan struct{} // when set, told of each append before it waits
}

func (f *flakyStore) AppendAuditWrites(ctx context.Context, c *registry.AuditChain, entries []registry.AuditEntry, durable bool) ([]error, error) {
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.release != nil {
		<-f.release
	}
	if f.broken.Load() {
		return nil, errors.New("disk I/O error")
	}
	return f.Store.AppendAuditWrites(ctx, c, entries, durable)
}

func start(t *testing.T, cfg Config) *Writer {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	w, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return w
}

func call(i int) registry.AuditEvent {
	return registry.AuditEvent{At: time.Now(), Caller: "support", Method: "/recovery.v1.RecoveryService/GetKey", Code: "OK",
		Organisations: []string{"org-" + string(rune('a'+i%26))}}
}

// TestConcurrentRecordsAreAllCommittedInOneVerifiableChain: records
// submitted from many goroutines are all written, in a chain that verifies.
func TestConcurrentRecordsAreAllCommittedInOneVerifiableChain(t *testing.T) {
	s := openStore(t)
	w := start(t, Config{Store: s, WriterID: "w1"})
	const goroutines, each = 16, 50
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				var err error
				if i%10 == 0 {
					err = w.SubmitAndWait(context.Background(), call(g))
				} else {
					err = w.Submit(call(g))
				}
				if err != nil {
					t.Errorf("submit: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep, err := s.VerifyAudit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Every record, and the checkpoint Close appends.
	if rep.Broken != nil || rep.Records != goroutines*each+1 || rep.Chains != 1 {
		t.Fatalf("report %+v, broken %v; want %d records in 1 chain", rep, rep.Broken, goroutines*each+1)
	}
}

// TestFailingCommitsMakeTheWriterUnhealthyAndAreRetried: a failing
// registry is reported at once to whoever waits and by Healthy; the
// records are written once it recovers.
func TestFailingCommitsMakeTheWriterUnhealthyAndAreRetried(t *testing.T) {
	fs := &flakyStore{Store: openStore(t)}
	w := start(t, Config{Store: fs, WriterID: "w1"})
	fs.broken.Store(true)
	if err := w.SubmitAndWait(context.Background(), call(1)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("SubmitAndWait on a failing registry: %v", err)
	}
	if err := w.Healthy(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Healthy on a failing registry: %v", err)
	}
	fs.broken.Store(false)
	// The failed record is retried before the next one is committed.
	if err := w.SubmitAndWait(context.Background(), call(2)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if err := w.Healthy(); err != nil {
		t.Fatalf("Healthy after recovery: %v", err)
	}
	rep, err := fs.VerifyAudit(context.Background())
	if err != nil || rep.Broken != nil || rep.Records != 2 {
		t.Fatalf("report %+v, %v: want both records, verified", rep, err)
	}
}

// TestAFullQueueRefusesRecords: a writer too far behind refuses records
// rather than holding calls or memory.
func TestAFullQueueRefusesRecords(t *testing.T) {
	fs := &flakyStore{Store: openStore(t), release: make(chan struct{}), entered: make(chan struct{}, 16)}
	w := start(t, Config{Store: fs, WriterID: "w1", QueueSize: 4, MaxBatch: 1})
	// NOTE: registered after start, so it runs before the writer's Close
	// (which would wait for the stuck commit forever).
	t.Cleanup(func() { close(fs.release) })
	// One record is taken by the commit, which is stuck; then four fill
	// the queue.
	if err := w.Submit(call(0)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fs.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the writer never began the first record's commit")
	}
	var refused error
	for i := range 10 {
		if err := w.Submit(call(i + 1)); err != nil {
			refused = err
			break
		}
	}
	if !errors.Is(refused, ErrUnavailable) {
		t.Fatalf("a full queue accepted every record: %v", refused)
	}
	if err := w.Healthy(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Healthy with a full queue: %v", err)
	}
}

// TestPruneExportsToAPrivateFileAndTheRestVerifies: records past the
// retention go to a 0600 JSON-lines file, and what stays still verifies.
func TestPruneExportsToAPrivateFileAndTheRestVerifies(t *testing.T) {
	s := openStore(t)
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := filepath.Join(t.TempDir(), "audit-export")
	w := start(t, Config{Store: s, WriterID: "w1", Retention: time.Hour, ExportDir: dir, Now: clock})
	for i := range 5 {
		e := call(i)
		e.At = now.Add(-2 * time.Hour)
		if err := w.SubmitAndWait(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.SubmitAndWait(context.Background(), call(9)); err != nil {
		t.Fatal(err)
	}
	path, err := w.Prune(context.Background())
	if err != nil || path == "" {
		t.Fatalf("Prune: %q, %v", path, err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != exportFileMode {
		t.Fatalf("export %s: %v, mode %v", path, err, info.Mode())
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := countLines(t, f); n != 5 {
		t.Fatalf("export has %d lines, want the 5 old records", n)
	}
	rep, err := s.VerifyAudit(context.Background())
	if err != nil || rep.Broken != nil || rep.Records != 2 {
		t.Fatalf("after prune: %+v, %v; want the new record and the prune record, verified", rep, err)
	}
	// Nothing old enough: no file.
	if path, err := w.Prune(context.Background()); err != nil || path != "" {
		t.Fatalf("second Prune: %q, %v", path, err)
	}
}

func countLines(t *testing.T, r io.Reader) int {
	t.Helper()
	n := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
