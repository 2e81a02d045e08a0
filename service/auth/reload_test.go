package auth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// reloadWait bounds the wait for a signal-driven reload, so a lost signal
// fails the test instead of hanging it. Nothing asserts on time.
const reloadWait = 30 * time.Second

// TestSIGHUPRotatesTokens sends real SIGHUPs to the test process: a valid
// new file replaces the tokens at once, an invalid one leaves them alone.
// Not parallel: the signal reaches every watcher in the process.
func TestSIGHUPRotatesTokens(t *testing.T) {
	const (
		oldToken = "rotation-token-old"
		newToken = "rotation-token-new"
	)
	path := writeCallersFile(t, callersJSON(t, entry("wallet-api", oldToken, "org-1")))
	reloads := make(chan error, 1)
	logs := &sandboxtest.LogBuffer{}
	a := newAuthenticator(t, auth.Config{CallersFile: path, OnReload: func(err error) { reloads <- err }}, nil)
	stop := a.WatchSIGHUP(t.Context(), slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(stop)
	conn := dial(t, startServer(t, a, nil), nil)

	hangUp := func() error {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-reloads:
			return err
		case <-time.After(reloadWait):
			t.Fatal("no reload after SIGHUP")
			return nil
		}
	}
	wantCaller := func(token, name string) {
		t.Helper()
		seen, err := getKeyAs(withAuthorization(t, "Bearer "+token), conn)
		if err != nil || seen.name != name {
			t.Fatalf("token %s: saw %+v, %v; want caller %s", token, seen, err, name)
		}
	}
	wantRefused := func(token string) {
		t.Helper()
		_, err := getKeyAs(withAuthorization(t, "Bearer "+token), conn)
		wantRefusal(t, err, codes.Unauthenticated, auth.ReasonTokenInvalid)
	}

	wantCaller(oldToken, "wallet-api")
	wantRefused(newToken)

	// Rotation: the new token works, the old one stops working.
	replaceFile(t, path, callersJSON(t,
		entry("wallet-api", newToken, "org-1"),
		entry("support-tool", tokenSupport, "*"),
	), 0o600)
	if err := hangUp(); err != nil {
		t.Fatalf("reload of a valid file: %v", err)
	}
	wantCaller(newToken, "wallet-api")
	wantCaller(tokenSupport, "support-tool")
	wantRefused(oldToken)
	if a.Callers().Len() != 2 {
		t.Fatalf("%d callers in force, want 2", a.Callers().Len())
	}

	// Invalid files are refused and change nothing.
	invalid := []struct {
		name    string
		content string
		mode    os.FileMode
		wantIn  string
	}{
		{"broken JSON", `{"callers": [`, 0o600, "not valid JSON"},
		{"bad entry", callersJSON(t, entry("wallet-api", oldToken)), 0o600, "callers[0].organisations"},
		{"readable by others", callersJSON(t, entry("wallet-api", oldToken, "org-1")), 0o644, "chmod 600"},
	}
	for _, tt := range invalid {
		replaceFile(t, path, tt.content, tt.mode)
		err := hangUp()
		var fe *auth.FileError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.wantIn) {
			t.Fatalf("%s: reload error %v, want a *FileError containing %q", tt.name, err, tt.wantIn)
		}
		wantCaller(newToken, "wallet-api")
		wantCaller(tokenSupport, "support-tool")
		wantRefused(oldToken)
	}

	out := logs.String()
	for _, want := range []string{"SIGHUP: callers file reloaded", "callers=2", "SIGHUP: callers file rejected; the previous callers stay in force", "chmod 600"} {
		if !strings.Contains(out, want) {
			t.Errorf("watcher logs lack %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{oldToken, newToken, digestOf(oldToken), digestOf(newToken)} {
		if strings.Contains(out, secret) {
			t.Errorf("watcher logs carry a token or digest:\n%s", out)
		}
	}
}

// TestReloadKeepsTheSetOnError checks Reload directly: the error names the
// problem and the set in force is the very same one.
func TestReloadKeepsTheSetOnError(t *testing.T) {
	path := testCallersFile(t)
	a := newAuthenticator(t, auth.Config{CallersFile: path}, io.Discard)
	before := a.Callers()
	replaceFile(t, path, `{"callers": [{"name": "x"}]}`, 0o600)
	err := a.Reload()
	var fe *auth.FileError
	if !errors.As(err, &fe) || fe.Field != "callers[0].token_sha256" {
		t.Fatalf("Reload error %v, want a *FileError for callers[0].token_sha256", err)
	}
	if a.Callers() != before {
		t.Fatal("a failed reload replaced the caller set")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil || a.Callers() != before {
		t.Fatalf("reload of a deleted file: %v; set replaced: %v", err, a.Callers() != before)
	}
}

// TestWatchSIGHUPStopsWithItsContext checks that cancelling ctx ends the
// watcher: stop returns only once the watcher goroutine has exited, so a
// watcher ignoring ctx would hang here until the test binary's timeout.
func TestWatchSIGHUPStopsWithItsContext(t *testing.T) {
	a := newAuthenticator(t, auth.Config{}, nil)
	ctx, cancel := context.WithCancel(t.Context())
	stop := a.WatchSIGHUP(ctx, nil)
	cancel()
	stop()
}

// TestReloadDuringCalls swaps between two files while calls run (bounded:
// 4 clients × 50 calls, 40 reloads): every call must see one file's caller
// whole, never a mixture or a failure. Run with -race it also checks the
// swap is free of data races.
func TestReloadDuringCalls(t *testing.T) {
	files := []string{
		callersJSON(t, entry("wallet-api", tokenWalletAPI, "org-1")),
		callersJSON(t, entry("wallet-api", tokenWalletAPI, "org-2", "org-3")),
	}
	path := writeCallersFile(t, files[0])
	a := newAuthenticator(t, auth.Config{CallersFile: path}, nil)
	conn := dial(t, startServer(t, a, nil), nil)

	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for range 50 {
				seen, err := getKeyAs(withAuthorization(t, "Bearer "+tokenWalletAPI), conn)
				if err == nil && seen.organisations != "org-1" && seen.organisations != "org-2,org-3" {
					err = fmt.Errorf("handler saw organisations %q", seen.organisations)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for i := range 40 {
		replaceFile(t, path, files[(i+1)%2], 0o600)
		if err := a.Reload(); err != nil {
			t.Errorf("reload %d: %v", i, err)
		}
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
