package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Options are what the caller decides; everything else comes from the
// standard OTEL_* environment variables.
type Options struct {
	// ServiceName is the service.name resource attribute unless
	// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES sets one. Required.
	ServiceName string
	// ServiceVersion is the service.version resource attribute; empty omits it.
	ServiceVersion string

	// SpanExporter, when set, receives every span in addition to the
	// exporters OTEL_TRACES_EXPORTER selects. It is called synchronously as
	// each span ends, so a test with an in-memory exporter (tracetest) sees
	// the span without waiting for a batch. NOTE: tracetest's
	// InMemoryExporter forgets its spans on Shutdown; read them before, or
	// use a SpanRecorder as SpanProcessor.
	SpanExporter sdktrace.SpanExporter
	// SpanProcessor, when set, is registered in addition, e.g. a
	// tracetest.SpanRecorder that also sees spans that have not ended.
	SpanProcessor sdktrace.SpanProcessor

	// ConsoleWriter receives the console exporter's JSON; nil means stdout.
	ConsoleWriter io.Writer
	// Logger, when set, receives the errors the SDK reports in the background
	// (a failed export, a dropped batch) instead of the standard log package.
	Logger *slog.Logger
}

// Telemetry is what Setup installed. Shutdown flushes it.
type Telemetry struct {
	tracerProvider *sdktrace.TracerProvider
	meters         *processMeters

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup installs the OpenTelemetry SDK behind the global API: a
// TracerProvider with the exporters the environment selects, the W3C
// TraceContext and Baggage propagator, and the process's MeterProvider backed
// by a Prometheus registry (with Go runtime and process metrics).
//
// NOTE: Setup validates the whole environment before it touches any global,
// so a configuration error leaves the process exactly as it was.
func Setup(ctx context.Context, opts Options) (*Telemetry, error) {
	if opts.ServiceName == "" {
		return nil, errors.New("telemetry: Options.ServiceName is required (it is the default service.name)")
	}
	if err := validateSamplerEnv(); err != nil {
		return nil, err
	}
	exporters, err := tracesExportersFromEnv()
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, opts.ServiceName, opts.ServiceVersion)
	if err != nil {
		return nil, err
	}
	meters, err := processMetersFor(res)
	if err != nil {
		return nil, err
	}

	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	built := make([]sdktrace.SpanExporter, 0, len(exporters))
	for _, kind := range exporters {
		exp, err := newSpanExporter(ctx, kind, opts.ConsoleWriter)
		if err != nil {
			shutdownExporters(ctx, built)
			return nil, err
		}
		built = append(built, exp)
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	if opts.SpanExporter != nil {
		tpOpts = append(tpOpts, sdktrace.WithSyncer(opts.SpanExporter))
	}
	if opts.SpanProcessor != nil {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(opts.SpanProcessor))
	}
	// No WithSampler: the SDK then reads OTEL_TRACES_SAMPLER(_ARG) itself.
	tp := sdktrace.NewTracerProvider(tpOpts...)

	globalTracerSwitch.install()
	globalTracerSwitch.use(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{},
	))
	if opts.Logger != nil {
		logger := opts.Logger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			logger.Warn("opentelemetry sdk error", slog.Any("error", err))
		}))
	}
	return &Telemetry{tracerProvider: tp, meters: meters}, nil
}

// TracerProvider is the SDK provider this Setup installed, for callers that
// want to pass it explicitly rather than through the global.
func (t *Telemetry) TracerProvider() *sdktrace.TracerProvider { return t.tracerProvider }

// MeterProvider is the process's MeterProvider (also the global one).
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.meters.provider }

// Registry is the Prometheus registry /metrics serves; a caller may register
// its own collectors on it.
func (t *Telemetry) Registry() *prometheus.Registry { return t.meters.registry }

// Shutdown stops tracing through this Setup's provider and flushes the spans
// it still holds to the exporters, waiting at most until ctx is done. Calling
// it again returns the first result.
//
// NOTE: the global tracer is pointed away first, so spans started during the
// flush are dropped rather than lost in a half-closed exporter. The
// MeterProvider is not shut down: it belongs to the process, and Prometheus
// pulls, so there is nothing to flush.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		globalTracerSwitch.release(t.tracerProvider)
		if err := t.tracerProvider.Shutdown(ctx); err != nil {
			t.shutdownErr = fmt.Errorf("telemetry: flushing spans: %w", err)
		}
	})
	return t.shutdownErr
}

func shutdownExporters(ctx context.Context, exporters []sdktrace.SpanExporter) {
	for _, e := range exporters {
		_ = e.Shutdown(ctx) // best effort: the caller already reports the real error
	}
}
