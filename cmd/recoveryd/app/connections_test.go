package app

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// notServedWait is how long a test watches for something that must not
// happen (a capped connection or stream being served). Without the cap it
// happens within milliseconds; with it, never, until a slot frees.
const notServedWait = time.Second

// dialTCP is a gRPC client of addr over plaintext TCP, closed at cleanup.
func dialTCP(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// checkServing fails the test unless a health Check over conn says SERVING.
func checkServing(t *testing.T, ctx context.Context, conn grpc.ClientConnInterface) {
	t.Helper()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: serviceName})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Check = %v, %v; want SERVING", resp, err)
	}
}

// TestMaxConnectionsHoldsTheNextConnection: with --max-connections 2, a
// third connection gets not one byte (not even the server's HTTP/2
// settings) while two are open, and is served as soon as one closes.
func TestMaxConnectionsHoldsTheNextConnection(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.MaxConnections = 2
	lis, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	srv := startReady(t, cfg, log, Options{Listener: lis}) // its client is connection 1
	ctx := testCtx(t)
	second := dialTCP(t, addr)
	checkServing(t, ctx, second)

	third, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err) // the kernel still completes the handshake: the cap is on serving
	}
	defer third.Close()
	firstByte := make(chan error, 1)
	go func() {
		_ = third.SetReadDeadline(time.Now().Add(testDeadline))
		_, err := third.Read(make([]byte, 1))
		firstByte <- err
	}()
	select {
	case err := <-firstByte:
		t.Fatalf("a third connection was served while two were open (read: %v)", err)
	case <-time.After(notServedWait):
	}
	// The two served connections still work meanwhile.
	checkServing(t, ctx, srv.conn)
	checkServing(t, ctx, second)

	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-firstByte:
		if err != nil {
			t.Fatalf("the third connection, once a slot was free: %v", err)
		}
	case <-time.After(testDeadline):
		t.Fatal("the third connection was not served after one of the two closed")
	}
}

// TestStreamsBeyondTheCapQueue: a connection with maxConcurrentStreams
// calls open gets its next call queued, not refused; it completes once one
// of them ends.
func TestStreamsBeyondTheCapQueue(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	srv := startReady(t, remoteConfig(t, up, t.TempDir()), log, Options{})
	ctx := testCtx(t)
	health := healthpb.NewHealthClient(srv.conn)

	// Watch streams stay open until cancelled: each holds one slot.
	cancels := make([]context.CancelFunc, 0, maxConcurrentStreams)
	for range maxConcurrentStreams {
		wctx, cancel := context.WithCancel(ctx)
		cancels = append(cancels, cancel)
		w, err := health.Watch(wctx, &healthpb.HealthCheckRequest{Service: serviceName})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("Watch: %v", err)
		}
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()

	queued := make(chan error, 1)
	go func() {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: serviceName})
		if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("queued Check = %v", resp)
		}
		queued <- err
	}()
	select {
	case err := <-queued:
		t.Fatalf("a call beyond %d streams on one connection ran at once (%v): the cap is not applied", maxConcurrentStreams, err)
	case <-time.After(notServedWait):
	}
	cancels[0]()
	select {
	case err := <-queued:
		if err != nil {
			t.Fatalf("the queued call failed instead of waiting for a slot: %v", err)
		}
	case <-time.After(testDeadline):
		t.Fatal("the queued call did not run after a stream ended")
	}
}
