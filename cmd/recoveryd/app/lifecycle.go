package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
)

// serve serves srv on lis until ctx ends, with rd deciding health (SERVING
// once ready, NOT_SERVING while a re-probe fails), then shuts down: the
// readiness checks stop, health goes NOT_SERVING for good (so balancers
// stop sending new calls), then GracefulStop for in-flight calls, and Stop
// once timeout has passed.
func serve(ctx context.Context, log *slog.Logger, srv *grpc.Server, hs *healthService, rd *readiness, lis net.Listener, timeout time.Duration) error {
	readyCtx, cancelReadiness := context.WithCancel(ctx)
	readinessDone := make(chan struct{})
	go func() {
		defer close(readinessDone)
		rd.run(readyCtx)
	}()
	stopReadiness := func() {
		cancelReadiness()
		<-readinessDone
	}
	defer stopReadiness()

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	log.Info("serving gRPC", "address", lis.Addr().String())

	select {
	case err := <-served:
		// Serve only returns early when the listener fails.
		return fmt.Errorf("serving gRPC on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}

	log.Info("shutting down: health NOT_SERVING, draining calls", "timeout", timeout.String())
	// NOTE: readiness has returned before drain, so no re-probe can race
	// the drain; the health server would ignore it anyway, but the log
	// would then claim SERVING during shutdown.
	stopReadiness()
	hs.drain()
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-stopped:
		log.Info("drained: every call finished")
	case <-timer.C:
		log.Warn("shutdown timeout passed: cancelling the calls still running", "timeout", timeout.String())
		srv.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving gRPC: %w", err)
	}
	return nil
}
