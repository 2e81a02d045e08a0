package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
)

// Readiness retry pacing: quick at first (the embedded sandbox is up within
// milliseconds), then no more than one round of checks every few seconds
// against an upstream that is down.
const (
	readinessFirstRetry = 100 * time.Millisecond
	readinessMaxRetry   = 5 * time.Second
	// readinessCheckTimeout bounds one check (a JWKS fetch, a database ping).
	readinessCheckTimeout = 10 * time.Second
)

// readinessCheck is one dependency that must answer before recoveryd
// reports SERVING.
type readinessCheck struct {
	name  string
	check func(ctx context.Context) error
}

// awaitReady runs the checks until all pass in one round, then marks the
// server SERVING. It gives up silently when ctx ends (shutdown).
func awaitReady(ctx context.Context, log *slog.Logger, hs *healthService, checks []readinessCheck) {
	delay := readinessFirstRetry
	for attempt := 1; ; attempt++ {
		failed := ""
		for _, c := range checks {
			cctx, cancel := context.WithTimeout(ctx, readinessCheckTimeout)
			err := c.check(cctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				failed = c.name
				log.Warn("not ready yet", "check", c.name, "attempt", attempt, "retry_in", delay.String(), "error", err)
				break
			}
		}
		if failed == "" {
			hs.markServing()
			log.Info("ready: health SERVING", "attempts", attempt)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, readinessMaxRetry)
	}
}

// serve serves srv on lis until ctx ends, with checks deciding when health
// turns SERVING, then shuts down: health NOT_SERVING first (so balancers
// stop sending new calls), then GracefulStop for in-flight calls, and Stop
// once timeout has passed.
func serve(ctx context.Context, log *slog.Logger, srv *grpc.Server, hs *healthService, checks []readinessCheck, lis net.Listener, timeout time.Duration) error {
	readyCtx, stopReadiness := context.WithCancel(ctx)
	readinessDone := make(chan struct{})
	go func() {
		defer close(readinessDone)
		awaitReady(readyCtx, log, hs, checks)
	}()
	defer func() {
		stopReadiness()
		<-readinessDone
	}()

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
