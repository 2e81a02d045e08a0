package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"
)

// bufconnBytes is the in-memory listener's buffer: one full-size message
// in flight each way.
const bufconnBytes = 4 << 20

// TestServer is recoveryd as Run builds it (the real registry, upstream
// adapter, interceptor chain, codec, health and lifecycle), started for a
// test of this or another package (SpiceDB's CompleteForTesting pattern),
// with Options as its test overrides. Without Options.Listener it is served
// over an in-memory listener.
type TestServer struct {
	// Conn is a client connection to the server.
	Conn *grpc.ClientConn
	// AdminAddr is the host:port of the admin endpoints (/metrics,
	// /healthz, /readyz); "" when cfg.AdminListen is empty and no
	// Options.AdminListener was given.
	AdminAddr string
	cancel    context.CancelFunc
	done      chan error
	once      sync.Once
	err       error
}

// StartTestServer runs Run(cfg) in the background and returns once the
// server can be dialled; it does not wait for readiness (WaitServing). creds
// are the client's transport credentials (nil: plaintext). Stop ends it.
// A cfg.AdminListen (such as "127.0.0.1:0") is listened on here, so that
// AdminAddr names the port the run serves.
func StartTestServer(cfg Config, log *slog.Logger, opts Options, creds credentials.TransportCredentials) (*TestServer, error) {
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	if opts.AdminListener == nil && cfg.AdminListen != "" {
		lis, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", cfg.AdminListen)
		if err != nil {
			return nil, fmt.Errorf("listening on the admin address %s: %w", cfg.AdminListen, err)
		}
		opts.AdminListener = lis
	}
	adminAddr := ""
	if opts.AdminListener != nil {
		adminAddr = opts.AdminListener.Addr().String()
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxSendMsgBytes)),
	}
	target := "passthrough:///recoveryd"
	if opts.Listener == nil {
		lis := bufconn.Listen(bufconnBytes)
		opts.Listener = lis
		dialOpts = append(dialOpts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	} else {
		target = "passthrough:///" + opts.Listener.Addr().String()
	}
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		_ = opts.Listener.Close()
		if opts.AdminListener != nil {
			_ = opts.AdminListener.Close()
		}
		return nil, fmt.Errorf("dialling the test server: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &TestServer{Conn: conn, AdminAddr: adminAddr, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- Run(ctx, cfg, log, opts) }()
	return s, nil
}

// WaitServing watches health until the RecoveryService is SERVING. It
// returns Run's error if the server stopped first, or ctx's.
func (s *TestServer) WaitServing(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	serving := make(chan error, 1)
	go func() {
		w, err := healthpb.NewHealthClient(s.Conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: serviceName}, grpc.WaitForReady(true))
		if err != nil {
			serving <- err
			return
		}
		for {
			resp, err := w.Recv()
			if err != nil {
				serving <- err
				return
			}
			if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				serving <- nil
				return
			}
		}
	}()
	select {
	case err := <-serving:
		if err != nil {
			return fmt.Errorf("waiting for SERVING: %w", err)
		}
		return nil
	case err := <-s.done:
		s.done <- err
		if err == nil {
			err = errors.New("Run returned no error")
		}
		return fmt.Errorf("recoveryd stopped before it was ready: %w", err)
	}
}

// Stop shuts the server down as SIGTERM would and returns Run's error;
// safe to call more than once.
func (s *TestServer) Stop() error {
	s.once.Do(func() {
		s.cancel()
		s.err = <-s.done
		_ = s.Conn.Close()
	})
	return s.err
}
