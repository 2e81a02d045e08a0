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

// Shutdown bounds beyond --shutdown-timeout.
const (
	// abandonLeadMax is how long before the shutdown deadline the upstream
	// calls still in flight are abandoned (their contexts cancelled), so
	// that their handlers can still record the outcome they know (unknown)
	// and answer before the connections are cut. It is at most a fifth of
	// the timeout.
	abandonLeadMax = time.Second
	// handlerGrace is how long after the deadline's Stop serve still waits
	// for handlers to return. A handler stuck past it (a registry write on
	// a hung disk) is left behind: the deadline is a hard bound.
	handlerGrace = time.Second
)

// ErrCallsCut is Run's error when shutdown could not drain every call
// within --shutdown-timeout: calls were cut at the deadline, or upstream
// calls were abandoned just before it. main exits with exitCallsCut.
var ErrCallsCut = errors.New("shutdown deadline passed: calls in flight were cut")

// serve serves srv on lis until ctx ends, with rd deciding health (SERVING
// once ready, NOT_SERVING while a re-probe fails), then shuts down: the
// readiness checks stop, health goes NOT_SERVING for good (so balancers
// stop sending new calls), then GracefulStop lets the calls in flight
// finish. Shortly before timeout has passed, abandon cuts the upstream
// calls still running; at timeout, Stop cancels every call left. serve
// returns by timeout plus handlerGrace whatever the handlers do: nil when
// every call drained, ErrCallsCut when calls were cut.
func serve(ctx context.Context, log *slog.Logger, srv *grpc.Server, hs *healthService, rd *readiness, lis net.Listener, timeout time.Duration, abandon func() int) error {
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
	err := drain(log, srv, timeout, abandon)
	// NOTE: Serve returns once a Stop or GracefulStop has closed the
	// listener and the transports; it does not wait for handlers.
	if serr := <-served; serr != nil && !errors.Is(serr, grpc.ErrServerStopped) {
		err = errors.Join(err, fmt.Errorf("serving gRPC: %w", serr))
	}
	return err
}

// drain stops srv gracefully within timeout: see serve.
func drain(log *slog.Logger, srv *grpc.Server, timeout time.Duration, abandon func() int) error {
	stopped := make(chan struct{})
	go func() {
		// NOTE: GracefulStop waits for every handler to return, even after
		// a Stop; drain therefore never waits on it past the deadline.
		srv.GracefulStop()
		close(stopped)
	}()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	abandonAt := time.NewTimer(timeout - min(timeout/5, abandonLeadMax))
	defer abandonAt.Stop()

	select {
	case <-stopped:
		log.Info("drained: every call finished")
		return nil
	case <-abandonAt.C:
	}
	abandoned := abandon()
	if abandoned > 0 {
		log.Warn("shutdown deadline near: abandoning the upstream calls in flight; their outcome is recorded as unknown where they may have acted",
			"upstream_calls", abandoned, "timeout", timeout.String())
	}
	select {
	case <-stopped:
		if abandoned == 0 {
			log.Info("drained: every call finished")
			return nil
		}
		log.Warn("drained after abandoning upstream calls")
		return ErrCallsCut
	case <-deadline.C:
	}
	log.Warn("shutdown timeout passed: cancelling the calls still running", "timeout", timeout.String())
	srv.Stop()
	grace := time.NewTimer(handlerGrace)
	defer grace.Stop()
	select {
	case <-stopped:
	case <-grace.C:
		log.Error("handlers still running after the shutdown deadline: stopping without them", "grace", handlerGrace.String())
	}
	return ErrCallsCut
}
