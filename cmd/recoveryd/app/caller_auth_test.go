package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// listServices asks server reflection (v1) for the services it serves.
func listServices(ctx context.Context, conn grpc.ClientConnInterface) ([]string, error) {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	// NOTE: a refused stream fails Send with io.EOF; Recv has the status.
	_ = stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	})
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	_ = stream.CloseSend()
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, nil
}

// TestCallerAuthenticationThroughRun runs recoveryd (development) with a
// callers file: protected calls need a known bearer token, health and
// reflection are public, each caller acts only for its organisations and is
// recorded with what it stored, and a refused call changes nothing.
func TestCallerAuthenticationThroughRun(t *testing.T) {
	log, logs := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI, otherOrgAPI)
	var banner bytes.Buffer
	// NOTE: startReady waits on health without a token: health is public.
	srv := startReady(t, cfg, log, Options{Stderr: &banner})
	ctx := testCtx(t)
	c := srv.client
	req := assignKeyRequest("user-auth", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)

	refusals := []struct {
		name   string
		ctx    context.Context
		code   codes.Code
		reason string
	}{
		{"no token", ctx, codes.Unauthenticated, "CALLER_TOKEN_MISSING"},
		{"unknown token", withToken(ctx, "tok-nobody-0000000000000000"), codes.Unauthenticated, "CALLER_TOKEN_INVALID"},
		{"token of another caller's organisation", withToken(ctx, otherOrgAPI.token), codes.PermissionDenied, "ORGANISATION_NOT_ALLOWED"},
	}
	for _, tt := range refusals {
		t.Run("AssignKey with "+tt.name, func(t *testing.T) {
			_, err := c.AssignKey(tt.ctx, req)
			wantStatus(t, err, tt.code, tt.reason)
		})
		t.Run("ListKeys with "+tt.name, func(t *testing.T) {
			_, err := c.ListKeys(tt.ctx, &recoveryv1.ListKeysRequest{CustomerId: testCustomerID})
			wantStatus(t, err, tt.code, tt.reason)
		})
	}
	if keys := up.Inspect.Keys(t); len(keys) != 0 {
		t.Fatalf("refused calls reached the upstream: %+v", keys)
	}

	// The right caller: the key is recorded with its name.
	resp, err := c.AssignKey(withToken(ctx, walletAPI.token), req)
	if err != nil {
		t.Fatalf("AssignKey as %s: %v", walletAPI.name, err)
	}
	if got := resp.GetKey().GetAssignedBy(); got != walletAPI.name {
		t.Errorf("assigned_by = %q, want %q", got, walletAPI.name)
	}
	// The other caller sees none of it: its listing is scoped to its own
	// organisation, and the key itself does not exist for it (KEY_NOT_FOUND,
	// as a key that was never assigned).
	others, err := c.ListKeys(withToken(ctx, otherOrgAPI.token), &recoveryv1.ListKeysRequest{})
	if err != nil || len(others.GetKeys()) != 0 {
		t.Errorf("ListKeys as %s = %v, %v; want no keys", otherOrgAPI.name, others, err)
	}
	_, err = c.GetKey(withToken(ctx, otherOrgAPI.token), &recoveryv1.GetKeyRequest{KeyId: resp.GetKey().GetKeyId()})
	wantStatus(t, err, codes.NotFound, "KEY_NOT_FOUND")

	// Health and reflection answer without a token in development.
	if _, err := srv.health.Check(ctx, &healthpb.HealthCheckRequest{Service: serviceName}); err != nil {
		t.Errorf("health without a token: %v", err)
	}
	services, err := listServices(ctx, srv.conn)
	if err != nil || !slices.Contains(services, serviceName) {
		t.Errorf("reflection without a token in development = %q, %v; want it to list %s", services, err, serviceName)
	}

	// The banner tells a development operator what is still unsafe, and no
	// longer claims there is no caller authentication.
	if !strings.Contains(banner.String(), "PUBLIC REFLECTION") || strings.Contains(banner.String(), "NO CALLER AUTHENTICATION") {
		t.Errorf("development banner with a callers file:\n%s", banner.String())
	}
	for _, secret := range []string{walletAPI.token, otherOrgAPI.token} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a bearer token reached the logs")
		}
	}
}

// TestSIGHUPRotatesCallerTokens sends SIGHUP to the test process while run
// serves: the rewritten callers file takes effect (the old token stops
// working, the new one works), and an invalid rewrite leaves it in force.
func TestSIGHUPRotatesCallerTokens(t *testing.T) {
	log, logs := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	callersFile := writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI)
	cfg.CallerTokensFile = callersFile
	reloads := make(chan error, 1)
	srv := startReady(t, cfg, log, Options{OnCallersReload: func(err error) { reloads <- err }})
	ctx := testCtx(t)
	list := func(token string) error {
		_, err := srv.client.ListKeys(withToken(ctx, token), &recoveryv1.ListKeysRequest{})
		return err
	}
	hangUp := func() error {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-reloads:
			return err
		case <-ctx.Done():
			t.Fatal("no reload after SIGHUP")
			return nil
		}
	}

	if err := list(walletAPI.token); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	rotated := walletAPI
	rotated.token = "tok-wallet-api-rotated-81c2e07fa3"
	writeCallersFile(t, callersFile, rotated)
	if err := hangUp(); err != nil {
		t.Fatalf("reload of a valid file: %v", err)
	}
	wantStatus(t, list(walletAPI.token), codes.Unauthenticated, "CALLER_TOKEN_INVALID")
	if err := list(rotated.token); err != nil {
		t.Fatalf("the new token after SIGHUP: %v", err)
	}

	// A broken rewrite is refused and the rotated set stays in force.
	writeFileAtomically(t, callersFile, []byte(`{"callers": [{"name": "wallet-api"}]}`))
	if err := hangUp(); err == nil {
		t.Fatal("reload of an invalid file succeeded")
	}
	if err := list(rotated.token); err != nil {
		t.Fatalf("after a rejected reload: %v", err)
	}
	// The reload's outcome reaches OnCallersReload before the watcher logs
	// it: wait (bounded) for the lines.
	for _, want := range []string{`"msg":"SIGHUP: callers file reloaded"`, `"msg":"SIGHUP: callers file rejected; the previous callers stay in force"`} {
		for !strings.Contains(logs.String(), want) {
			select {
			case <-ctx.Done():
				t.Fatalf("log lacks %s", want)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	if strings.Contains(logs.String(), rotated.token) {
		t.Error("the rotated token reached the logs")
	}
}
