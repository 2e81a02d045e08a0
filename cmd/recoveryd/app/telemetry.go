package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/walletprovider/recoveryservice/cmd/internal/telemetry"
)

// telemetryServiceName is service.name unless OTEL_SERVICE_NAME says otherwise.
const telemetryServiceName = "recoveryd"

// telemetryFlushTimeout bounds the span flush at exit, so an unreachable
// collector cannot hold the process.
const telemetryFlushTimeout = 5 * time.Second

// setupTelemetry installs tracing and metrics as the OTEL_* environment says
// (no exporter by default); spans also go to extra when it is not nil.
func setupTelemetry(ctx context.Context, log *slog.Logger, extra sdktrace.SpanProcessor) (*telemetry.Telemetry, error) {
	tel, err := telemetry.Setup(ctx, telemetry.Options{
		ServiceName:    telemetryServiceName,
		ServiceVersion: telemetry.BuildVersion(),
		SpanProcessor:  extra,
		Logger:         log.With("component", "otel"),
	})
	if err != nil {
		return nil, fmt.Errorf("setting up telemetry: %w", err)
	}
	return tel, nil
}

// shutdownTelemetry flushes the spans still held.
func shutdownTelemetry(tel *telemetry.Telemetry) error {
	ctx, cancel := context.WithTimeout(context.Background(), telemetryFlushTimeout)
	defer cancel()
	return tel.Shutdown(ctx)
}

// startAdmin serves /metrics, /healthz and /readyz on --admin-listen until
// the returned stop is called; /readyz follows the gRPC health status. With
// --admin-listen empty and no ln it does nothing; ln, when set, is served
// instead of listening on --admin-listen (app.Options.AdminListener).
//
// NOTE: it listens before returning, so a busy port fails the start, and it
// keeps serving until stop, so /readyz answers 503 while calls drain.
func startAdmin(ctx context.Context, cfg Config, log *slog.Logger, tel *telemetry.Telemetry, hs *healthService, ln net.Listener) (stop func() error, err error) {
	if ln == nil {
		if cfg.AdminListen == "" {
			return func() error { return nil }, nil
		}
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.AdminListen); err != nil {
			return nil, fmt.Errorf("listening on --admin-listen %s: %w", cfg.AdminListen, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	handler, paths := tel.AdminHandler(healthReady(hs)), "/metrics /healthz /readyz"
	if cfg.AdminPprof {
		handler, paths = telemetry.WithProfiling(handler), paths+" /debug/pprof/"
		// Sampled, so that the block and mutex profiles have something to
		// show: a blocking event about every 100 µs spent blocked, one
		// contended mutex in 100.
		runtime.SetBlockProfileRate(int((100 * time.Microsecond).Nanoseconds()))
		runtime.SetMutexProfileFraction(100)
	}
	go func() { served <- telemetry.ServeAdminListener(ctx, ln, handler) }()
	log.Info("serving admin endpoints", "address", ln.Addr().String(), "paths", paths)
	return func() error {
		cancel()
		return <-served
	}, nil
}

// healthReady is ready when the gRPC health server reports the whole server
// SERVING: the same answer a gRPC health check gets. When it is not, the
// error is the reason readiness recorded (the failing check and its cause),
// so an operator reading /readyz learns why, not only that.
func healthReady(hs *healthService) func() error {
	return func() error {
		resp, err := hs.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			return fmt.Errorf("health check: %w", err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health is %s: %s", resp.GetStatus(), hs.notReadyReason())
		}
		return nil
	}
}
