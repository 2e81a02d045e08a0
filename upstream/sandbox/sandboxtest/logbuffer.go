package sandboxtest

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitLimit bounds WaitFor and WaitCount: it only turns a hang into a
// failure, and no assertion depends on it.
const waitLimit = 30 * time.Second

// LogBuffer collects log output for a test's assertions. It is safe for a
// server's goroutines to write while the test reads; the zero value is ready
// to use. When Mirror is set, every write is copied there too (t.Output(),
// say, so the log shows with a failure or -v).
type LogBuffer struct {
	// Mirror, when not nil, also receives every write; its errors are
	// ignored, since the buffer is what the test reads.
	Mirror io.Writer

	mu  sync.Mutex
	buf bytes.Buffer
	// changed is closed, and replaced, by every write, waking all waiters.
	changed chan struct{}
}

// Write appends p; slog handlers write one record per call.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.Mirror != nil {
		_, _ = b.Mirror.Write(p)
	}
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return len(p), nil
}

// String is everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger is a text logger, every level, into the buffer: one line a record,
// attributes as key=value ("status=400"), which is what tests search.
func (b *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// WaitFor blocks until a line contains every part and returns it. Tests use
// it to know a request was fully handled: its log line comes last.
func (b *LogBuffer) WaitFor(t testing.TB, parts ...string) string {
	t.Helper()
	return b.WaitCount(t, 1, parts...)[0]
}

// WaitCount blocks until n lines contain every part and returns them; the
// test fails if that takes longer than waitLimit.
func (b *LogBuffer) WaitCount(t testing.TB, n int, parts ...string) []string {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		matched, changed := b.match(parts)
		if len(matched) >= n {
			return matched
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("fewer than %d log lines with %q within %s; log:\n%s", n, parts, waitLimit, b.String())
		}
	}
}

// match returns the lines holding every part, and a channel closed by the
// next write.
func (b *LogBuffer) match(parts []string) ([]string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var matched []string
	for line := range strings.Lines(b.buf.String()) {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			matched = append(matched, strings.TrimSuffix(line, "\n"))
		}
	}
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return matched, b.changed
}
