package upstream

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// answerFirstEarly answers the first secure/file request with 503 before
// reading its body (a gateway in trouble), closing answered once it has;
// every other request reaches the emulator.
func answerFirstEarly(answered chan<- struct{}) func(http.Handler) http.Handler {
	var calls atomic.Int32
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != sandbox.PathSecureFile || calls.Add(1) > 1 {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusServiceUnavailable)
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			close(answered)
		})
	}
}

// writeUntilFailure writes chunk to u until a Write fails (within a bound)
// and returns that error; nil if none failed.
func writeUntilFailure(t *testing.T, u *FileUpload, chunk []byte) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := u.Write(chunk); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// TestFileUploadEarlyAnswerStoresNothing: a one-shot upload the upstream
// answers with 503 before the body is complete fails with an error that
// says nothing was stored (the form never ended), not that the upstream
// may have acted.
func TestFileUploadEarlyAnswerStoresNothing(t *testing.T) {
	verifyNoLeak(t)
	answered := make(chan struct{})
	emu := startSandboxWith(t, sandbox.Config{}, answerFirstEarly(answered))
	c := emu.client(t, sandbox.DevPartnerToken)
	key := assignTestKey(t, c, "early-user")

	u, err := c.StartSecureFile(t.Context(), SecureFileRequest{PublicKey: key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{7}, 32<<10)
	// The 503 may come back while the first Write is still in flight, so
	// the first failing Write is the one checked, whichever it is.
	_, werr := u.Write(chunk)
	if werr == nil {
		<-answered
		werr = writeUntilFailure(t, u, chunk)
	}
	u.Abort(werr)
	ue, ok := errors.AsType[*Error](werr)
	if !ok || ue.Status != http.StatusServiceUnavailable || !ue.NothingDone() {
		t.Fatalf("Write after an early 503 = %v; want the 503, marked as nothing done", werr)
	}
	if n := len(emu.backups(t)); n != 0 {
		t.Errorf("emulator holds %d backups", n)
	}
}

// TestFileUploadReplayAfterEarlyAnswer: a replayable upload the upstream
// answers with 503 before the body is complete keeps accepting the file,
// and Finish re-sends it whole from Replay: the upstream stores it once,
// byte for byte.
func TestFileUploadReplayAfterEarlyAnswer(t *testing.T) {
	verifyNoLeak(t)
	answered := make(chan struct{})
	emu := startSandboxWith(t, sandbox.Config{}, answerFirstEarly(answered))
	c := emu.client(t, sandbox.DevPartnerToken)
	key := assignTestKey(t, c, "replay-user")

	var spool bytes.Buffer // stands in for the service's spool file
	var replays atomic.Int32
	u, err := c.StartSecureFile(t.Context(), SecureFileRequest{PublicKey: key.PublicKey,
		Replay: func() (io.ReadCloser, error) {
			replays.Add(1)
			return io.NopCloser(bytes.NewReader(spool.Bytes())), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	write := func(p []byte) {
		t.Helper()
		spool.Write(p)
		if n, err := u.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(p))
		}
	}
	for i := range 4 {
		write(bytes.Repeat([]byte{byte(i)}, 32<<10))
		if i == 0 {
			<-answered
		}
	}
	write([]byte("the end"))
	resp, err := u.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if replays.Load() != 1 {
		t.Errorf("Replay opened %d times, want 1", replays.Load())
	}
	if got := emu.backups(t); len(got) != 1 || got[0].BackupID != resp.BackupID {
		t.Fatalf("emulator holds %+v, want only backup %s", got, resp.BackupID)
	}
	if !bytes.Equal(emu.content(t, resp.BackupID), spool.Bytes()) {
		t.Error("the emulator stored other bytes than written")
	}
}

// TestFileUploadReplayNotForRefusals: a refusal (413) is not re-sent, even
// from a replayable upload: it would be refused again.
func TestFileUploadReplayNotForRefusals(t *testing.T) {
	verifyNoLeak(t)
	emu, c := startSandbox(t, sandbox.Config{MaxFileBytes: 1 << 10})
	key := assignTestKey(t, c, "refused-user")
	var replays atomic.Int32
	u, err := c.StartSecureFile(t.Context(), SecureFileRequest{PublicKey: key.PublicKey,
		Replay: func() (io.ReadCloser, error) {
			replays.Add(1)
			return io.NopCloser(bytes.NewReader(nil)), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	_, werr := u.Write(bytes.Repeat([]byte{1}, 4<<10))
	var ferr error
	if werr == nil {
		_, ferr = u.Finish()
	} else {
		u.Abort(werr)
	}
	if err := errors.Join(werr, ferr); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("upload over the upstream's limit = %v, want ErrTooLarge", err)
	}
	if replays.Load() != 0 {
		t.Errorf("a refused upload was re-sent %d times", replays.Load())
	}
	if n := len(emu.backups(t)); n != 0 {
		t.Errorf("emulator holds %d backups", n)
	}
}

// TestAbandonCutsFileReplay: a replay re-sent from the spool is an
// upstream call like any other: Abandon counts it and cuts it, although
// the caller's context never ends, and Finish says it was abandoned.
func TestAbandonCutsFileReplay(t *testing.T) {
	verifyNoLeak(t)
	answered := make(chan struct{})
	replaying := make(chan struct{}, 1)
	release := make(chan struct{})
	var calls atomic.Int32
	emu := startSandboxWith(t, sandbox.Config{}, func(next http.Handler) http.Handler {
		first := answerFirstEarly(answered)(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != sandbox.PathSecureFile || calls.Add(1) == 1 {
				first.ServeHTTP(w, r)
				return
			}
			// The replay: held until the client gives up on it.
			replaying <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-release:
			}
			http.Error(w, "too late", http.StatusServiceUnavailable)
		})
	})
	// NOTE: registered after the emulator's cleanup, so it runs first.
	t.Cleanup(func() { close(release) })
	c := emu.client(t, sandbox.DevPartnerToken)
	key := assignTestKey(t, c, "abandoned-replay-user")

	var spool bytes.Buffer
	u, err := c.StartSecureFile(t.Context(), SecureFileRequest{PublicKey: key.PublicKey,
		Replay: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(spool.Bytes())), nil }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		p := bytes.Repeat([]byte{byte(i)}, 32<<10)
		spool.Write(p)
		if _, err := u.Write(p); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if i == 0 {
			<-answered
		}
	}
	finished := make(chan error, 1)
	go func() {
		_, err := u.Finish()
		finished <- err
	}()
	select {
	case <-replaying:
	case <-time.After(time.Minute):
		t.Fatal("the upload was not re-sent")
	}
	if n := c.Abandon(); n != 1 {
		t.Errorf("Abandon() = %d calls in flight, want 1 (the replay)", n)
	}
	select {
	case err := <-finished:
		if !errors.Is(err, ErrAbandoned) {
			t.Errorf("Finish of an abandoned replay = %v, want ErrAbandoned", err)
		}
		if ue, ok := errors.AsType[*Error](err); !ok || ue.NothingDone() {
			t.Errorf("abandoned replay = %v: it was sent, so it may have stored", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Abandon did not cut the replay in flight")
	}
	if n := len(emu.backups(t)); n != 0 {
		t.Errorf("emulator holds %d backups", n)
	}
}
