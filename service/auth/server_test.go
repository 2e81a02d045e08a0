package auth_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/auth"
)

// callTimeout bounds every test RPC, so a hang fails the test instead of
// stalling the suite. Nothing asserts on time.
const callTimeout = 20 * time.Second

// callerReporter is a RecoveryService whose GetKey and SecureFile report the
// caller the interceptor put in their context: key_id / backup_id say
// "authenticated" or "anonymous", assigned_by / stored_by the caller name,
// and the organisation's customer_name the caller's organisations.
type callerReporter struct {
	recoveryv1.UnimplementedRecoveryServiceServer
}

// AuthFuncOverride is go-grpc-middleware's per-service opt-out; this one
// would let every call in. It is here to prove the auth interceptor ignores
// it: every refusal test below would fail if a service could opt out.
func (callerReporter) AuthFuncOverride(ctx context.Context, _ string) (context.Context, error) {
	return ctx, nil
}

func (callerReporter) GetKey(ctx context.Context, req *recoveryv1.GetKeyRequest) (*recoveryv1.GetKeyResponse, error) {
	c, ok := auth.CallerFrom(ctx)
	return &recoveryv1.GetKeyResponse{Key: &recoveryv1.RecoveryKey{
		KeyId:        authenticatedOrNot(ok),
		AssignedBy:   c.Name,
		Organisation: &recoveryv1.Organisation{CustomerName: strings.Join(c.Organisations, ",")},
	}}, nil
}

func (callerReporter) SecureFile(stream grpc.ClientStreamingServer[recoveryv1.SecureFileRequest, recoveryv1.SecureFileResponse]) error {
	c, ok := auth.CallerFrom(stream.Context())
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
	}
	return stream.SendAndClose(&recoveryv1.SecureFileResponse{Backup: &recoveryv1.Backup{
		BackupId: authenticatedOrNot(ok),
		StoredBy: c.Name,
	}})
}

func authenticatedOrNot(ok bool) string {
	if ok {
		return "authenticated"
	}
	return "anonymous"
}

// startServer runs a real gRPC server on a loopback port with a's
// interceptors (a may be nil: authentication off), the standard health and
// reflection services and callerReporter, and returns its address.
func startServer(t *testing.T, a *auth.Authenticator, creds credentials.TransportCredentials) string {
	t.Helper()
	lis, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamServerInterceptor()),
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	reflection.Register(srv)
	recoveryv1.RegisterRecoveryServiceServer(srv, callerReporter{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// dial opens a client connection to addr (plaintext when creds is nil).
func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// newAuthenticator builds an Authenticator over the test callers file,
// logging into logs (nil: discarded).
func newAuthenticator(t *testing.T, cfg auth.Config, logs io.Writer) *auth.Authenticator {
	t.Helper()
	if cfg.CallersFile == "" {
		cfg.CallersFile = testCallersFile(t)
	}
	if logs == nil {
		logs = io.Discard
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	return a
}

// withAuthorization returns a call context carrying the given authorization
// metadata values (none: no metadata).
func withAuthorization(t *testing.T, values ...string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	for _, v := range values {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
	}
	return ctx
}

// seenCaller is what callerReporter saw: whether the call was authenticated,
// the caller's name and organisations.
type seenCaller struct {
	authenticated bool
	name          string
	organisations string
}

// getKeyAs calls the unary GetKey and returns what the handler saw.
func getKeyAs(ctx context.Context, conn *grpc.ClientConn) (seenCaller, error) {
	resp, err := recoveryv1.NewRecoveryServiceClient(conn).GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: "k"})
	if err != nil {
		return seenCaller{}, err
	}
	k := resp.GetKey()
	return seenCaller{k.GetKeyId() == "authenticated", k.GetAssignedBy(), k.GetOrganisation().GetCustomerName()}, nil
}

// secureFileAs calls the client-streaming SecureFile and returns what the
// handler saw.
func secureFileAs(ctx context.Context, conn *grpc.ClientConn) (seenCaller, error) {
	stream, err := recoveryv1.NewRecoveryServiceClient(conn).SecureFile(ctx)
	if err != nil {
		return seenCaller{}, err
	}
	// A refused stream may fail the send with io.EOF; the status comes
	// from CloseAndRecv either way.
	_ = stream.Send(&recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Chunk{Chunk: []byte("x")}})
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return seenCaller{}, err
	}
	b := resp.GetBackup()
	return seenCaller{b.GetBackupId() == "authenticated", b.GetStoredBy(), ""}, nil
}

// checkHealth calls the public health Check.
func checkHealth(ctx context.Context, conn *grpc.ClientConn) error {
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return status.Errorf(codes.Internal, "health status %v", resp.GetStatus())
	}
	return err
}

// codeOf is the gRPC code of err.
func codeOf(err error) codes.Code {
	return status.Code(err)
}
