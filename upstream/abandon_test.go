package upstream

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// TestAbandonCutsCallsInFlight: Abandon cancels the calls in flight, the
// JSON ones and a file upload alike, although their callers' contexts
// never end; it counts them; and a call made afterwards is refused before
// anything is sent (nothing done, so the caller may retry elsewhere).
func TestAbandonCutsCallsInFlight(t *testing.T) {
	var arrived atomic.Int32
	arrivals := make(chan struct{}, 8)
	release := make(chan struct{})
	up := sandboxtest.Start(t, sandboxtest.Options{
		// An upstream that answers no partner request until the test is
		// over: only Abandon ends these calls.
		Wrap: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/v1/partner/") {
					arrived.Add(1)
					arrivals <- struct{}{}
					<-release
					http.Error(w, "too late", http.StatusServiceUnavailable)
					return
				}
				next.ServeHTTP(w, r)
			})
		},
	})
	// NOTE: registered after Start's cleanup, so it runs first.
	t.Cleanup(func() { close(release) })
	emu := &emulator{srv: up.Server, http: up.HTTP}
	c := emu.client(t, sandbox.DevPartnerToken)

	assigned := make(chan error, 1)
	go func() {
		_, err := c.AssignKey(context.Background(), validAssign())
		assigned <- err
	}()
	upload, err := c.StartSecureFile(context.Background(), SecureFileRequest{PublicKey: strings.Repeat("ab", 16)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := upload.Write(bytes.Repeat([]byte{1}, 1024)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case <-arrivals:
		case <-time.After(time.Minute):
			t.Fatal("the calls did not reach the upstream")
		}
	}

	if n := c.Abandon(); n != 2 {
		t.Errorf("Abandon() = %d calls in flight, want 2", n)
	}
	select {
	case err := <-assigned:
		if !errors.Is(err, ErrAbandoned) {
			t.Errorf("abandoned AssignKey = %v, want ErrAbandoned", err)
		}
		if ue, ok := errors.AsType[*Error](err); !ok || ue.NothingDone() {
			t.Errorf("abandoned AssignKey after it was sent = %v: it may have acted, so it must not say nothing was done", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Abandon did not end the AssignKey in flight")
	}
	if _, err := upload.Finish(); !errors.Is(err, ErrAbandoned) && !errors.Is(err, context.Canceled) {
		t.Errorf("abandoned upload's Finish = %v, want it cut", err)
	}

	before := arrived.Load()
	_, err = c.AssignKey(context.Background(), validAssign())
	ue, ok := errors.AsType[*Error](err)
	if !ok || !ue.NothingDone() || !errors.Is(err, ErrAbandoned) {
		t.Errorf("AssignKey after Abandon = %v, want ErrAbandoned with nothing done", err)
	}
	if arrived.Load() != before {
		t.Error("a call after Abandon reached the upstream")
	}
	if n := c.Abandon(); n != 0 {
		t.Errorf("second Abandon() = %d calls in flight, want 0", n)
	}
}
