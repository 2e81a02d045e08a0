package app

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// TestHealthNotServingUntilReady: health says NOT_SERVING while the
// verification keys cannot be fetched, then SERVING once they can.
func TestHealthNotServingUntilReady(t *testing.T) {
	log, _ := newTestLogger(t)
	release := make(chan struct{})
	gate := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == sandbox.PathJWKS {
				select {
				case <-release:
				default:
					http.Error(w, "JWKS not published yet", http.StatusServiceUnavailable)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	}
	up := startUpstream(t, t.TempDir(), log, gate)
	srv := startServer(t, remoteConfig(t, up, t.TempDir()), log, Options{})
	ctx := testCtx(t)

	watch, err := srv.health.Watch(ctx, &healthpb.HealthCheckRequest{Service: serviceName})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("first Watch status = %v, %v; want NOT_SERVING", first, err)
	}
	for _, name := range []string{"", serviceName} {
		resp, err := srv.health.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("Check(%q) before the JWKS is reachable = %v, %v; want NOT_SERVING", name, resp, err)
		}
	}

	close(release)
	if next, err := watch.Recv(); err != nil || next.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch status after the JWKS is reachable = %v, %v; want SERVING", next, err)
	}
	for _, name := range []string{"", serviceName} {
		resp, err := srv.health.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) once ready = %v, %v; want SERVING", name, resp, err)
		}
	}
	if _, err := srv.health.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check of an unknown service = %v, want NotFound", err)
	}
}

// TestReflectionListsTheService: both reflection versions (v1 for current
// tools, v1alpha for grpcurl and ghz) list every service.
func TestReflectionListsTheService(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	srv := startReady(t, remoteConfig(t, up, t.TempDir()), log, Options{})
	ctx := testCtx(t)
	// Operators browse the admin service with grpcurl too.
	want := []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", recoveryv1.RecoveryAdminService_ServiceDesc.ServiceName, serviceName}

	v1, err := reflectionv1.NewServerReflectionClient(srv.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := v1.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := v1.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		got = append(got, s.GetName())
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("reflection v1 lists %q, want %q", got, want)
	}
	// The service's descriptor resolves, imports included.
	if err := v1.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: serviceName}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := v1.Recv(); err != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Errorf("reflection v1 FileContainingSymbol(%s) = %v, %v", serviceName, resp, err)
	}

	// v1alpha is deprecated, yet grpcurl and ghz still speak it: it must stay listed.
	names, err := listServicesV1alpha(ctx, srv.conn)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, serviceName) {
		t.Errorf("reflection v1alpha lists %v, not %s", names, serviceName)
	}
}

// listServicesV1alpha asks reflection v1alpha for the service names.
//
//nolint:staticcheck // SA1019: v1alpha is deprecated, and tested on purpose: grpcurl and ghz use it.
func listServicesV1alpha(ctx context.Context, conn grpc.ClientConnInterface) ([]string, error) {
	stream, err := reflectionv1alpha.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{}}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, nil
}

// TestGracefulShutdownDrainsCalls: on shutdown, health watchers see
// NOT_SERVING first and their streams end; a call in flight still
// completes; run then returns without having had to cut anything.
func TestGracefulShutdownDrainsCalls(t *testing.T) {
	log, logs := newTestLogger(t)
	observer := sandboxtest.NewWatch(sandbox.PathSecureFile, 1)
	up := startUpstream(t, t.TempDir(), log, observer.Wrap)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.ShutdownTimeout = testDeadline
	srv := startReady(t, cfg, log, Options{})
	ctx := testCtx(t)
	key := assignKey(t, ctx, srv.client, "user-1")

	watch, err := srv.health.Watch(ctx, &healthpb.HealthCheckRequest{Service: serviceName})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch = %v, %v; want SERVING", first, err)
	}
	stream, err := srv.client.SecureFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	part := bytes.Repeat([]byte{0x5a}, 32<<10)
	for _, m := range []*recoveryv1.SecureFileRequest{fileHeader(key.GetKeyId()), fileChunk(part)} {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	await(t, observer.Read(), "the upload to reach the upstream")

	stopped := make(chan error, 1)
	go func() { stopped <- srv.stop() }()

	if next, err := watch.Recv(); err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after shutdown began = %v, %v; want NOT_SERVING", next, err)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Watch stream after NOT_SERVING ended with %v, want Unavailable", err)
	}
	// The call in flight is allowed to finish.
	if err := stream.Send(fileChunk(part)); err != nil {
		t.Fatalf("Send during shutdown: %v", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("the call in flight failed during a graceful shutdown: %v", err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(testDeadline):
		t.Fatal("run did not return")
	}
	if !strings.Contains(logs.String(), "drained: every call finished") || strings.Contains(logs.String(), "shutdown timeout passed") {
		t.Error("shutdown did not drain every call before its deadline")
	}
	if got := up.Inspect.Content(t, resp.GetBackup().GetBackupId()); len(got) != 2*len(part) {
		t.Errorf("upstream stored %d bytes, want %d", len(got), 2*len(part))
	}
}

// TestShutdownDeadlineCutsCalls: a call still running when the shutdown
// deadline passes is cut, nothing of it is stored, and run returns.
func TestShutdownDeadlineCutsCalls(t *testing.T) {
	log, logs := newTestLogger(t)
	observer := sandboxtest.NewWatch(sandbox.PathSecureFile, 1)
	up := startUpstream(t, t.TempDir(), log, observer.Wrap)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.ShutdownTimeout = 50 * time.Millisecond
	srv := startReady(t, cfg, log, Options{})
	ctx := testCtx(t)
	key := assignKey(t, ctx, srv.client, "user-1")

	stream, err := srv.client.SecureFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*recoveryv1.SecureFileRequest{fileHeader(key.GetKeyId()), fileChunk(bytes.Repeat([]byte{1}, 32<<10))} {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	await(t, observer.Read(), "the upload to reach the upstream")

	// The caller never finishes its file: shutdown must not wait for it,
	// and says it cut a call.
	srv.expectCut = true
	if err := srv.stop(); !errors.Is(err, ErrCallsCut) {
		t.Fatalf("run returned %v, want ErrCallsCut", err)
	}
	if _, err := stream.CloseAndRecv(); err == nil {
		t.Error("a call cut by the shutdown deadline succeeded")
	}
	observer.NextEnd(t)
	if backups := up.Inspect.Backups(t); len(backups) != 0 {
		t.Errorf("upstream stored %+v from a cut call", backups)
	}
	if !strings.Contains(logs.String(), "shutdown timeout passed") {
		t.Error("the log does not say the shutdown deadline cut calls")
	}
	// Cutting means the handler returned: one still waiting for the
	// caller's next message (until the stream idle timeout) is not cut.
	if strings.Contains(logs.String(), "handlers still running") {
		t.Error("the SecureFile handler kept running after the shutdown cancelled its call")
	}
}

// TestRestartKeepsKeysUsable: recoveryd on the embedded sandbox, stopped
// and started again on the same --data-dir, still knows its keys, and the
// upstream still accepts data for them.
func TestRestartKeepsKeysUsable(t *testing.T) {
	log, _ := newTestLogger(t)
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.AdminListen = "127.0.0.1:0"
	ctx := testCtx(t)

	first := startReady(t, cfg, log, Options{SandboxKeySource: testkeys.NewRSASource()})
	key := assignKey(t, ctx, first.client, "user-1")
	before, err := first.client.SecureData(ctx, secureDataByKeyID(key.GetKeyId(), []byte("before the restart")))
	if err != nil {
		t.Fatalf("SecureData before restart: %v", err)
	}
	if err := first.stop(); err != nil {
		t.Fatalf("first run returned %v", err)
	}

	second := startReady(t, cfg, log, Options{SandboxKeySource: testkeys.NewRSASource()})
	again, err := second.client.AssignKey(ctx, assignKeyRequest("user-1", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	if err != nil || !again.GetAlreadyAssigned() || again.GetKey().GetKeyId() != key.GetKeyId() {
		t.Fatalf("AssignKey after restart = %v, %v; want the recorded key %s", again, err, key.GetKeyId())
	}
	// By key id and by public key: the embedded upstream still holds the
	// private half (it decrypts and checks the checksum before storing).
	after, err := second.client.SecureData(ctx, secureDataByKeyID(key.GetKeyId(), []byte("after the restart")))
	if err != nil {
		t.Fatalf("SecureData by key_id after restart: %v", err)
	}
	byHex := secureDataByKeyID("", []byte("after the restart, by hex"))
	byHex.Key = &recoveryv1.SecureDataRequest_PublicKeyHex{PublicKeyHex: key.GetPublicKeyHex()}
	if _, err := second.client.SecureData(ctx, byHex); err != nil {
		t.Fatalf("SecureData by public key after restart: %v", err)
	}
	listed, err := second.client.ListBackups(ctx, &recoveryv1.ListBackupsRequest{KeyId: key.GetKeyId()})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, b := range listed.GetBackups() {
		ids = append(ids, b.GetBackupId())
	}
	if len(ids) != 3 || ids[1] != after.GetBackup().GetBackupId() || ids[2] != before.GetBackup().GetBackupId() {
		t.Errorf("ListBackups after restart = %q, want 3 with %s and %s", ids, after.GetBackup().GetBackupId(), before.GetBackup().GetBackupId())
	}
}
