package sandbox

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

const instrumentationName = "github.com/walletprovider/recoveryservice/upstream/sandbox"

// telemetry holds the emulator's instruments, taken from the global
// providers (recoveryd installs the SDK; elsewhere they are no-ops).
type telemetry struct {
	tracer   trace.Tracer
	requests metric.Int64Counter
	duration metric.Float64Histogram
}

func newTelemetry() (*telemetry, error) {
	meter := otel.Meter(instrumentationName)
	requests, err := meter.Int64Counter("recovery.sandbox.requests",
		metric.WithDescription("Requests the upstream emulator answered, by route and status."))
	if err != nil {
		return nil, err
	}
	duration, err := meter.Float64Histogram("recovery.sandbox.request.duration",
		metric.WithUnit("s"), metric.WithDescription("Time the upstream emulator took per request."))
	if err != nil {
		return nil, err
	}
	return &telemetry{tracer: otel.Tracer(instrumentationName), requests: requests, duration: duration}, nil
}

// startSpan opens the request's span. Behind a server that already traces
// (sandboxd wraps the handler in otelhttp) it is an internal child of that
// span; served bare (httptest, recoveryd's embedded mode) it is the server
// span, continuing the caller's trace when it sent one.
func (t *telemetry) startSpan(r *http.Request) (context.Context, trace.Span) {
	ctx, kind := r.Context(), trace.SpanKindInternal
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(r.Header))
		kind = trace.SpanKindServer
	}
	return t.tracer.Start(ctx, "sandbox "+r.Method, trace.WithSpanKind(kind), //nolint:spancheck // the caller ends it, in finish
		trace.WithAttributes(attribute.String("http.request.method", r.Method)))
}

// spanAttributeKeys are the log attributes also safe and useful on spans
// (ids and sizes; never tokens, key material or plaintext).
var spanAttributeKeys = map[string]bool{"key_id": true, "backup_id": true, "key_environment": true, "size_bytes": true, "error": true}

// finish records the request's metrics and ends its span.
func (t *telemetry) finish(ctx context.Context, span trace.Span, r *http.Request, rec *requestLog, elapsed time.Duration) {
	route := r.Pattern
	if route == "" {
		route = "unmatched"
	}
	attrs := metric.WithAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", rec.status))
	t.requests.Add(ctx, 1, attrs)
	t.duration.Record(ctx, elapsed.Seconds(), attrs)

	span.SetName("sandbox " + route)
	span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", rec.status))
	for i := 0; i+1 < len(rec.attrs); i += 2 {
		key, ok := rec.attrs[i].(string)
		if !ok || !spanAttributeKeys[key] {
			continue
		}
		switch v := rec.attrs[i+1].(type) {
		case string:
			span.SetAttributes(attribute.String(key, v))
		case int64:
			span.SetAttributes(attribute.Int64(key, v))
		case int:
			span.SetAttributes(attribute.Int(key, v))
		}
	}
	span.End()
}
