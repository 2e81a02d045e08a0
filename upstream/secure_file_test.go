package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// generator produces size deterministic pseudo-random bytes, hashing them
// as it goes, and calls hook (if set) before each Read with the bytes
// produced so far; a hook error is returned by Read.
//
// NOTE: produced is atomic because SecureFile may return (on a cancelled
// context) while its writer goroutine is still inside Read.
type generator struct {
	rng      *rand.ChaCha8
	size     int64
	produced atomic.Int64
	sum      hash.Hash
	hook     func(produced int64) error
}

func newGenerator(size int64) *generator {
	return &generator{rng: rand.NewChaCha8([32]byte{1}), size: size, sum: sha256.New()}
}

func (g *generator) Read(p []byte) (int, error) {
	produced := g.produced.Load()
	if g.hook != nil {
		if err := g.hook(produced); err != nil {
			return 0, err
		}
	}
	if produced >= g.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), g.size-produced)]
	_, _ = g.rng.Read(p)
	g.sum.Write(p)
	g.produced.Add(int64(len(p)))
	return len(p), nil
}

func (g *generator) sha256() string { return hex.EncodeToString(g.sum.Sum(nil)) }

var errSourceBroken = errors.New("source broke mid-file")

// TestSecureFileAbortedMidStream: a reader failure aborts the request
// mid-body; the caller gets the reader's error and the emulator stores
// nothing.
func TestSecureFileAbortedMidStream(t *testing.T) {
	emu, c := startSandbox(t, sandbox.Config{})
	key := assignTestKey(t, c, "abort-user")
	tests := []struct {
		name    string
		file    func() io.Reader
		wantErr error
	}{
		{"fails at once", func() io.Reader {
			g := newGenerator(1 << 20)
			g.hook = func(int64) error { return errSourceBroken }
			return g
		}, errSourceBroken},
		{"fails after 300 KiB", func() io.Reader {
			g := newGenerator(4 << 20)
			g.hook = func(n int64) error {
				if n >= 300<<10 {
					return errSourceBroken
				}
				return nil
			}
			return g
		}, errSourceBroken},
		{"pipe closed with an error", func() io.Reader {
			pr, pw := io.Pipe()
			go func() {
				chunk := make([]byte, 32<<10)
				for range 10 {
					if _, err := pw.Write(chunk); err != nil {
						return
					}
				}
				pw.CloseWithError(errSourceBroken)
			}()
			return pr
		}, errSourceBroken},
		{"unexpected EOF", func() io.Reader {
			g := newGenerator(1 << 20)
			g.hook = func(n int64) error {
				if n >= 64<<10 {
					return io.ErrUnexpectedEOF
				}
				return nil
			}
			return g
		}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.SecureFile(context.Background(), SecureFileRequest{PublicKey: key.PublicKey, File: tt.file()})
			if err == nil {
				t.Fatalf("SecureFile = %+v, want an error", resp)
			}
			if !errors.Is(err, ErrUploadAborted) || !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want ErrUploadAborted wrapping %v", err, tt.wantErr)
			}
			if got := emu.backups(t); len(got) != 0 {
				t.Fatalf("the emulator stored %d backups from an aborted upload: %+v", len(got), got)
			}
		})
	}
	// The client still works after the aborts.
	if _, err := c.SecureFile(context.Background(), SecureFileRequest{PublicKey: key.PublicKey, File: newGenerator(1000)}); err != nil {
		t.Fatalf("SecureFile after aborts: %v", err)
	}
	if got := emu.backups(t); len(got) != 1 {
		t.Fatalf("emulator holds %d backups, want 1", len(got))
	}
}

// TestSecureFileContextCancelled: cancelling ctx mid-body aborts the
// request, whether the reader is busy producing or blocked.
func TestSecureFileContextCancelled(t *testing.T) {
	emu, c := startSandbox(t, sandbox.Config{})
	key := assignTestKey(t, c, "cancel-user")

	t.Run("reader producing", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		g := newGenerator(8 << 20)
		g.hook = func(n int64) error {
			if n >= 256<<10 {
				cancel() // and keep producing
			}
			return nil
		}
		_, err := c.SecureFile(ctx, SecureFileRequest{PublicKey: key.PublicKey, File: g})
		var uerr *Error
		if !errors.As(err, &uerr) || !errors.Is(err, context.Canceled) || uerr.Kind != KindUnavailable {
			t.Fatalf("error = %v, want KindUnavailable wrapping context.Canceled", err)
		}
		if n := g.produced.Load(); n >= g.size {
			t.Fatalf("the whole file was read (%d bytes) despite the cancel", n)
		}
	})

	t.Run("caller idle", func(t *testing.T) {
		// The transport waits on the pipe for the caller's next bytes,
		// and the caller writes none: the cancellation must still end the
		// request, or Finish would wait for ever.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		u, err := c.StartSecureFile(ctx, SecureFileRequest{PublicKey: key.PublicKey})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := u.Write(make([]byte, 128<<10)); err != nil {
			t.Fatalf("Write: %v", err)
		}
		cancel()
		finished := make(chan error, 1)
		go func() {
			_, err := u.Finish()
			finished <- err
		}()
		select {
		case err = <-finished:
		case <-time.After(30 * time.Second):
			u.Abort(errSourceBroken)
			t.Fatal("Finish did not return after ctx ended while the caller was idle")
		}
		var uerr *Error
		if !errors.As(err, &uerr) || !errors.Is(err, context.Canceled) || uerr.Kind != KindUnavailable {
			t.Fatalf("Finish = %v, want KindUnavailable wrapping context.Canceled", err)
		}
	})

	if got := emu.backups(t); len(got) != 0 {
		t.Fatalf("the emulator stored %d backups from cancelled uploads: %+v", len(got), got)
	}
}

// progress counts the bytes the emulator has read of a request body and
// lets a producer wait until it has read enough.
type progress struct {
	mu       sync.Mutex
	consumed int64
	changed  chan struct{}
}

func newProgress() *progress { return &progress{changed: make(chan struct{})} }

func (p *progress) add(n int) {
	p.mu.Lock()
	p.consumed += int64(n)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// waitFor blocks until at least n bytes were consumed or ctx ends.
func (p *progress) waitFor(ctx context.Context, n int64) error {
	for {
		p.mu.Lock()
		consumed, changed := p.consumed, p.changed
		p.mu.Unlock()
		if consumed >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("the server read %d bytes, the client produced %d ahead: the body is not streamed (%w)", consumed, n, ctx.Err())
		}
	}
}

type countingBody struct {
	io.ReadCloser
	p *progress
}

func (b countingBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	b.p.add(n)
	return n, err
}

// TestSecureFileStreamsLargeFile sends 8 MiB through the real emulator
// while never letting the producer get more than a small window ahead of
// what the emulator has read. A client that buffered the body (or set a
// Content-Length by reading it first) would deadlock on the window and fail.
func TestSecureFileStreamsLargeFile(t *testing.T) {
	const (
		size   = 8 << 20
		window = 256 << 10
	)
	sb, err := sandbox.New(sandbox.Config{KeySource: testKeySource(), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	prog := newProgress()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == sandbox.PathSecureFile {
			r.Body = countingBody{ReadCloser: r.Body, p: prog}
			if r.ContentLength != -1 || len(r.TransferEncoding) == 0 || r.TransferEncoding[0] != "chunked" {
				t.Errorf("secure/file sent with Content-Length %d, Transfer-Encoding %v; want chunked", r.ContentLength, r.TransferEncoding)
			}
		}
		sb.ServeHTTP(w, r)
	}))
	defer hs.Close()
	emu := &emulator{srv: sb, http: hs}
	c := emu.client(t, sandbox.DevPartnerToken)
	key := assignTestKey(t, c, "large-file-user")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var maxAhead int64
	g := newGenerator(size)
	g.hook = func(produced int64) error {
		if produced > window {
			if err := prog.waitFor(ctx, produced-window); err != nil {
				return err
			}
		}
		prog.mu.Lock()
		maxAhead = max(maxAhead, produced-prog.consumed)
		prog.mu.Unlock()
		return nil
	}
	resp, err := c.SecureFile(ctx, SecureFileRequest{PublicKey: key.PublicKey, File: g})
	if err != nil {
		t.Fatalf("SecureFile: %v", err)
	}
	got := emu.backups(t)
	if len(got) != 1 || got[0].BackupID != resp.BackupID || got[0].SizeBytes != size || got[0].SHA256 != g.sha256() {
		t.Fatalf("emulator holds %+v, want one %d-byte backup %s with sha256 %s", got, size, resp.BackupID, g.sha256())
	}
	t.Logf("streamed %d bytes; the producer was at most %d bytes ahead of the emulator", size, maxAhead)
}

// TestSecureFileEarlyAnswer: when the upstream answers before the body
// ends (413 past the limit) while the caller is between chunks, as a
// caller fed from a slow stream often is, the answer is what the caller
// gets next, without the caller having to write or abort first.
//
// NOTE: Go's HTTP server drains up to 256 KiB of an unread request body
// before it writes a response unless the response closes the connection,
// so the emulator is wrapped to answer with "Connection: close", as
// front-end proxies commonly do for a 413.
func TestSecureFileEarlyAnswer(t *testing.T) {
	answered := make(chan struct{})
	emu := startSandboxWith(t, sandbox.Config{MaxFileBytes: 64 << 10}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			next.ServeHTTP(w, r)
			if r.URL.Path == sandbox.PathSecureFile {
				close(answered)
			}
		})
	})
	c := emu.client(t, sandbox.DevPartnerToken)
	key := assignTestKey(t, c, "early-answer-user")

	u, err := c.StartSecureFile(context.Background(), SecureFileRequest{PublicKey: key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 16<<10)
	for range 16 { // 256 KiB, well past the limit
		if _, err = u.Write(chunk); err != nil {
			break
		}
	}
	select { // the caller stalls until the upstream has answered
	case <-answered:
	case <-time.After(30 * time.Second):
		u.Abort(errSourceBroken)
		t.Fatal("the emulator never answered the oversize upload")
	}
	guard := time.AfterFunc(30*time.Second, func() {
		t.Error("the upload waited for the stalled caller after the upstream answered")
		u.Abort(errSourceBroken)
	})
	if err == nil {
		_, err = u.Finish()
	}
	guard.Stop()
	var uerr *Error
	if !errors.As(err, &uerr) || uerr.Kind != KindTooLarge || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("error = %v, want KindTooLarge", err)
	}
	if _, ferr := u.Finish(); !errors.Is(ferr, ErrTooLarge) {
		t.Errorf("Finish after the early answer = %v, want the 413", ferr)
	}
	if got := emu.backups(t); len(got) != 0 {
		t.Fatalf("the emulator stored %+v", got)
	}
}
