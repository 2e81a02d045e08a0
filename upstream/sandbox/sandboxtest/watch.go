package sandboxtest

import (
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Watch observes the requests to one path that reach the emulator (its
// Wrap goes in Options.Wrap): each arrival, when one request body has been
// read far enough, and the status each request was answered with. Tests
// use it to act while an upload is under way and to wait, before asserting
// that nothing was stored, until an aborted request is over.
type Watch struct {
	path        string
	readAtLeast int64
	arrived     chan struct{}
	ended       chan int
	read        chan struct{}
	readOnce    sync.Once
}

// watchBuffer is how many arrivals and ends a Watch keeps unread.
const watchBuffer = 64

// NewWatch watches requests to path. Read is closed once the emulator has
// read readAtLeast bytes of one of their bodies (never, when it is 0).
func NewWatch(path string, readAtLeast int64) *Watch {
	return &Watch{path: path, readAtLeast: readAtLeast,
		arrived: make(chan struct{}, watchBuffer), ended: make(chan int, watchBuffer), read: make(chan struct{})}
}

// Wrap puts the watch in front of the emulator's handler.
func (w *Watch) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != w.path {
			next.ServeHTTP(rw, r)
			return
		}
		w.arrived <- struct{}{}
		if w.readAtLeast > 0 {
			r.Body = &countingBody{ReadCloser: r.Body, reached: func(n int64) {
				if n >= w.readAtLeast {
					w.readOnce.Do(func() { close(w.read) })
				}
			}}
		}
		rec := &statusRecorder{ResponseWriter: rw}
		defer func() { w.ended <- rec.status }()
		next.ServeHTTP(rec, r)
	})
}

// Arrived receives once per watched request, as it reaches the emulator.
func (w *Watch) Arrived() <-chan struct{} { return w.arrived }

// Read is closed once readAtLeast bytes of a watched body were read.
func (w *Watch) Read() <-chan struct{} { return w.read }

// NextEnd waits for the next watched request to be over and returns the
// status it was answered with (0: none, the client went away first).
func (w *Watch) NextEnd(t testing.TB) int {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	select {
	case code := <-w.ended:
		return code
	case <-deadline.C:
	}
	t.Fatalf("no request to %s ended within %s", w.path, waitLimit)
	return 0
}

// countingBody tells reached how many bytes have been read so far.
type countingBody struct {
	io.ReadCloser
	n       int64
	reached func(n int64)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	b.reached(b.n)
	return n, err
}

// statusRecorder remembers the status the emulator answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer (the
// emulator closes connections on some errors).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
