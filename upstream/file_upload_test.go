package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// startSandboxWith is startSandbox with the emulator's handler wrapped, so
// a test can watch or hold up what the upstream reads and answers.
func startSandboxWith(t *testing.T, cfg sandbox.Config, wrap func(http.Handler) http.Handler) *emulator {
	t.Helper()
	if cfg.KeySource == nil {
		cfg.KeySource = testkeys.NewRSASource()
	}
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	sb, err := sandbox.New(cfg)
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	hs := httptest.NewServer(wrap(sb))
	t.Cleanup(func() {
		hs.Close()
		sb.Close()
	})
	return &emulator{srv: sb, http: hs}
}

// content is what the emulator stored for a backup, through its
// inspection endpoint.
func (e *emulator) content(t *testing.T, backupID string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.http.URL+sandbox.PathInspectBackups+"/"+backupID+"/content", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatalf("reading backup content: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reading backup content: status %d, %v", resp.StatusCode, err)
	}
	return body
}

// verifyNoLeak fails t if a goroutine started during t is still running
// once t and its cleanups (the emulator's shutdown among them) are done.
// Call it before anything that registers a cleanup.
func verifyNoLeak(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// fileWatch wraps the emulator so a test can see how much of each
// secure/file body it has read and how the request ended.
type fileWatch struct {
	read     *progress
	statuses chan int // one per secure/file request, when its handler returns
}

func newFileWatch() *fileWatch { return &fileWatch{read: newProgress(), statuses: make(chan int, 8)} }

func (fw *fileWatch) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != sandbox.PathSecureFile {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = countingBody{ReadCloser: r.Body, p: fw.read}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		fw.statuses <- rec.status
	})
}

// ended waits for the handler of the next secure/file request to return.
func (fw *fileWatch) ended(t *testing.T) int {
	t.Helper()
	select {
	case code := <-fw.statuses:
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("the emulator's secure/file handler did not return")
		return 0
	}
}

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

// TestFileUploadFinishStoresTheExactBytes: the bytes written, in chunks
// of uneven sizes, are what the upstream stores, and Finish returns its
// answer; afterwards Abort changes nothing and Write is refused.
func TestFileUploadFinishStoresTheExactBytes(t *testing.T) {
	verifyNoLeak(t)
	emu, c := startSandbox(t, sandbox.Config{})
	key := assignTestKey(t, c, "finish-user")
	file := make([]byte, 700<<10+13)
	g := newGenerator(int64(len(file)))
	if _, err := io.ReadFull(g, file); err != nil {
		t.Fatal(err)
	}

	md := Metadata{Description: "share 2 of 3", ContentType: "application/octet-stream", OriginalFilename: "share.bin"}
	u, err := c.StartSecureFile(t.Context(), SecureFileRequest{PublicKey: key.PublicKey, Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	for rest, size := file, 1; len(rest) > 0; size = size*7%(100<<10) + 1 {
		n := min(size, len(rest))
		if w, err := u.Write(rest[:n]); err != nil || w != n {
			t.Fatalf("Write(%d bytes) = %d, %v", n, w, err)
		}
		rest = rest[n:]
	}
	resp, err := u.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if resp.BackupID == "" || resp.BackupType != "file" || resp.Metadata != md {
		t.Errorf("Finish = %+v, want a file backup with the metadata sent", resp)
	}
	got := emu.backups(t)
	if len(got) != 1 || got[0].BackupID != resp.BackupID || got[0].SizeBytes != int64(len(file)) || got[0].SHA256 != g.sha256() {
		t.Fatalf("emulator holds %+v, want one %d-byte backup %s", got, len(file), resp.BackupID)
	}
	if !bytes.Equal(emu.content(t, resp.BackupID), file) {
		t.Fatal("the emulator stored other bytes than written")
	}

	u.Abort(errSourceBroken) // after Finish: nothing to abort
	if again, err := u.Finish(); err != nil || again != resp {
		t.Errorf("Finish again = %+v, %v; want the same answer", again, err)
	}
	if _, err := u.Write([]byte("late")); err == nil {
		t.Error("Write after Finish succeeded")
	}
	if n := len(emu.backups(t)); n != 1 {
		t.Errorf("emulator holds %d backups after a late Abort and Write, want 1", n)
	}
}

// TestFileUploadAbortMidwayStoresNothing: an upload aborted while the
// upstream is reading it stores nothing, however many bytes it had, and
// every later call reports the abort's cause.
func TestFileUploadAbortMidwayStoresNothing(t *testing.T) {
	verifyNoLeak(t)
	fw := newFileWatch()
	emu := startSandboxWith(t, sandbox.Config{}, fw.wrap)
	c := emu.client(t, sandbox.DevPartnerToken)
	key := assignTestKey(t, c, "abort-midway-user")

	u, err := c.StartSecureFile(t.Context(), SecureFileRequest{PublicKey: key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for range 8 {
		if _, err := u.Write(chunk); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := fw.read.waitFor(ctx, 256<<10); err != nil {
		t.Fatal(err) // the abort must land on an upload the upstream is reading
	}
	u.Abort(errSourceBroken)
	if code := fw.ended(t); code == http.StatusOK {
		t.Fatal("the emulator answered 200 to the aborted upload")
	}
	u.Abort(errors.New("a second cause")) // idempotent: the first cause stays
	if _, err := u.Write(chunk); !errors.Is(err, errSourceBroken) {
		t.Errorf("Write after Abort = %v, want the abort's cause", err)
	}
	if resp, err := u.Finish(); !errors.Is(err, errSourceBroken) || resp != nil {
		t.Errorf("Finish after Abort = %+v, %v; want the abort's cause", resp, err)
	}
	if got := emu.backups(t); len(got) != 0 {
		t.Fatalf("the emulator stored %+v from an aborted upload", got)
	}
}

// TestFileUploadContextCancelledMidway: the caller's ctx ending while
// the body is open aborts the upload like Abort, with a typed error.
func TestFileUploadContextCancelledMidway(t *testing.T) {
	verifyNoLeak(t)
	fw := newFileWatch()
	emu := startSandboxWith(t, sandbox.Config{}, fw.wrap)
	c := emu.client(t, sandbox.DevPartnerToken)
	key := assignTestKey(t, c, "cancel-midway-user")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	u, err := c.StartSecureFile(ctx, SecureFileRequest{PublicKey: key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Write(make([]byte, 300<<10)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	cancel()
	if code := fw.ended(t); code == http.StatusOK {
		t.Fatal("the emulator answered 200 to the cancelled upload")
	}
	_, werr := u.Write([]byte("more"))
	_, ferr := u.Finish()
	for name, err := range map[string]error{"Write": werr, "Finish": ferr} {
		var uerr *Error
		if !errors.As(err, &uerr) || uerr.Kind != KindUnavailable || !errors.Is(err, context.Canceled) {
			t.Errorf("%s after the cancel = %v, want KindUnavailable wrapping context.Canceled", name, err)
		}
	}
	if got := emu.backups(t); len(got) != 0 {
		t.Fatalf("the emulator stored %+v from a cancelled upload", got)
	}
}

// TestFileUploadFinishOutlivesTheCaller: once Finish has completed the
// body, the caller's ctx ending no longer aborts: the file is stored and
// Finish returns its backup id, so a stored file is never left unreported.
func TestFileUploadFinishOutlivesTheCaller(t *testing.T) {
	verifyNoLeak(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	emu := startSandboxWith(t, sandbox.Config{}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == sandbox.PathSecureFile {
				// The emulator answers only after it has the whole form:
				// cancel just before, while Finish waits for the answer.
				w = &cancelOnAnswer{ResponseWriter: w, cancel: cancel}
			}
			next.ServeHTTP(w, r)
		})
	})
	c := emu.client(t, sandbox.DevPartnerToken)
	key := assignTestKey(t, c, "outlive-user")

	u, err := c.StartSecureFile(ctx, SecureFileRequest{PublicKey: key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Write([]byte(strings.Repeat("ciphertext", 1000))); err != nil {
		t.Fatalf("Write: %v", err)
	}
	resp, err := u.Finish()
	if ctx.Err() == nil {
		t.Fatal("the caller's ctx was not cancelled during Finish: the test proves nothing")
	}
	if err != nil {
		t.Fatalf("Finish = %v, want the stored backup despite the caller leaving", err)
	}
	if got := emu.backups(t); len(got) != 1 || got[0].BackupID != resp.BackupID {
		t.Fatalf("emulator holds %+v, want backup %s", got, resp.BackupID)
	}
}

// cancelOnAnswer cancels the caller's ctx as the emulator starts its answer.
type cancelOnAnswer struct {
	http.ResponseWriter
	cancel context.CancelFunc
}

func (w *cancelOnAnswer) WriteHeader(code int) {
	w.cancel()
	w.ResponseWriter.WriteHeader(code)
}

// TestFileUploadAbortReleasesABlockedWrite: when the upstream stops
// reading, Write blocks on the pipe (the upload holds no copy of the
// file); an Abort from another goroutine releases it with the cause.
func TestFileUploadAbortReleasesABlockedWrite(t *testing.T) {
	verifyNoLeak(t)
	stalled, release := make(chan struct{}), make(chan struct{})
	defer close(release) // before the emulator's shutdown waits for the handler
	emu := startSandboxWith(t, sandbox.Config{}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == sandbox.PathSecureFile {
				// Read a little, then stop until the test has aborted.
				// NOTE: r.Context() would not end when the client goes:
				// the server watches the connection only once the body
				// has been read.
				_, _ = io.CopyN(io.Discard, r.Body, 64<<10)
				close(stalled)
				<-release
				_, _ = io.Copy(io.Discard, r.Body)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	c := emu.client(t, sandbox.DevPartnerToken)
	key := assignTestKey(t, c, "blocked-write-user")

	u, err := c.StartSecureFile(t.Context(), SecureFileRequest{PublicKey: key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	writeErr := make(chan error, 1)
	go func() {
		chunk := make([]byte, 256<<10)
		for {
			n, err := u.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				writeErr <- err
				return
			}
		}
	}()
	<-stalled
	// Let the writer fill what the connection buffers and block.
	for prev := int64(-1); prev != written.Load(); time.Sleep(200 * time.Millisecond) {
		prev = written.Load()
	}
	u.Abort(errSourceBroken)
	select {
	case err := <-writeErr:
		if !errors.Is(err, errSourceBroken) {
			t.Fatalf("the blocked Write returned %v, want the abort's cause", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Abort did not release the blocked Write")
	}
	t.Logf("the writer blocked after %d bytes", written.Load())
	if got := emu.backups(t); len(got) != 0 {
		t.Fatalf("the emulator stored %+v", got)
	}
}

// TestStartSecureFileRefusesBadInput: a request the adapter will not send
// fails at once with the field named, and nothing reaches the upstream.
func TestStartSecureFileRefusesBadInput(t *testing.T) {
	verifyNoLeak(t)
	emu, c := startSandbox(t, sandbox.Config{})
	for _, tt := range []struct {
		name  string
		req   SecureFileRequest
		field string
	}{
		{"no public key", SecureFileRequest{}, "public_key"},
		{"a File to read", SecureFileRequest{PublicKey: "3082", File: strings.NewReader("x")}, "file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, err := c.StartSecureFile(t.Context(), tt.req)
			var uerr *Error
			if !errors.As(err, &uerr) || uerr.Kind != KindInvalid || uerr.Sent || uerr.Fields[tt.field] == "" || u != nil {
				t.Fatalf("StartSecureFile = %v, %v; want KindInvalid naming %s, not sent", u, err, tt.field)
			}
		})
	}
	if got := emu.backups(t); len(got) != 0 {
		t.Fatalf("the emulator stored %+v", got)
	}
}
