package registry

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

const instrumentationName = "github.com/walletprovider/recoveryservice/service/registry"

// operationDurationBuckets suit database round trips: sub-millisecond SQLite
// reads up to PostgreSQL writes stuck behind a lock.
var operationDurationBuckets = []float64{
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
}

// telemetry is one Store's tracer and instruments. Spans carry the backend,
// the operation's outcome and, on failure, a fixed error class: never a
// token, idempotency key or public key, and never an error's text (a
// driver's message may quote a value).
type telemetry struct {
	tracer   trace.Tracer
	duration metric.Float64Histogram
	backend  attribute.KeyValue
}

func newTelemetry(backend string, tp trace.TracerProvider, mp metric.MeterProvider) *telemetry {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	duration, err := mp.Meter(instrumentationName).Float64Histogram(
		"recovery.registry.operation.duration",
		metric.WithDescription("Duration of registry operations, by operation and backend."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(operationDurationBuckets...),
	)
	if err != nil {
		// The API returns a working no-op instrument with the error; the
		// error only reports an invalid name, fixed above.
		otel.Handle(err)
	}
	return &telemetry{
		tracer:   tp.Tracer(instrumentationName),
		duration: duration,
		backend:  attribute.String("backend", backend),
	}
}

// start begins operation op ("ReserveAssignment" …). Call the returned end
// exactly once with the operation's error and, when it has one, its outcome
// ("reserved", "recorded" …); an empty outcome is derived from the error.
//
//nolint:spancheck // the returned end func ends the span
func (t *telemetry) start(ctx context.Context, op string) (context.Context, func(err error, outcome string)) {
	begin := time.Now()
	ctx, span := t.tracer.Start(ctx, "registry."+op,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", t.backend.Value.AsString())),
	)
	return ctx, func(err error, outcome string) {
		class := errorClass(err)
		if outcome == "" || err != nil {
			outcome = class
		}
		span.SetAttributes(attribute.String("outcome", outcome))
		if err != nil && !errors.Is(err, ErrNotFound) {
			span.SetStatus(codes.Error, class)
		}
		span.End()
		t.duration.Record(ctx, time.Since(begin).Seconds(),
			metric.WithAttributes(attribute.String("operation", op), t.backend))
	}
}

// errorClass names err's kind for spans, without its text.
func errorClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrReservationLost):
		return "reservation_lost"
	case errors.Is(err, ErrInvalidArgument):
		return "invalid_argument"
	case errors.Is(err, ErrInvalidPageToken):
		return "invalid_page_token"
	case errors.Is(err, ErrDuplicate):
		return "duplicate"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	default:
		return "error"
	}
}
