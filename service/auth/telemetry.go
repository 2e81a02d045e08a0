package auth

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// instrumentationName names this package's meter and tracer.
const instrumentationName = "github.com/walletprovider/recoveryservice/service/auth"

// Metric attribute values; low-cardinality by construction (a reason is one
// of the Reason constants).
const (
	outcomeAllowed = "allowed"
	outcomeDenied  = "denied"
	outcomeOK      = "ok"
	outcomeError   = "error"

	stageAuthenticate = "authenticate"
	stageAuthorize    = "authorize"
)

// telemetry holds the package's instruments, created once from the global
// MeterProvider (recoveryd installs the SDK; until then they are no-ops).
type telemetry struct {
	decisions metric.Int64Counter
	reloads   metric.Int64Counter
	callers   metric.Int64Gauge
}

var instruments = newTelemetry()

func newTelemetry() telemetry {
	meter := otel.Meter(instrumentationName)
	var t telemetry
	var err error
	// NOTE: instrument constructors fail only on invalid names or options;
	// on failure the API still returns a usable no-op instrument.
	t.decisions, err = meter.Int64Counter("recovery.auth.decisions",
		metric.WithDescription("Authentication and authorization decisions, by stage, outcome and reason."),
		metric.WithUnit("{decision}"))
	reportInstrumentError(err)
	t.reloads, err = meter.Int64Counter("recovery.auth.callers_file.reloads",
		metric.WithDescription("Loads of the callers file, by outcome; on error the previous set stays in force."),
		metric.WithUnit("{reload}"))
	reportInstrumentError(err)
	t.callers, err = meter.Int64Gauge("recovery.auth.callers",
		metric.WithDescription("Callers in the callers file in force."),
		metric.WithUnit("{caller}"))
	reportInstrumentError(err)
	return t
}

// decision counts one authentication or authorization decision. reason is
// ERROR_REASON_UNSPECIFIED for an allowed call and counts as "".
func (t telemetry) decision(ctx context.Context, stage, outcome string, reason recoveryv1.ErrorReason) {
	name := ""
	if reason != recoveryv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		name = ReasonName(reason)
	}
	t.decisions.Add(ctx, 1, metric.WithAttributes(
		attribute.String("stage", stage),
		attribute.String("outcome", outcome),
		attribute.String("reason", name),
	))
}

// reload counts one load of the callers file and, on success, records the
// size of the set now in force.
func (t telemetry) reload(ctx context.Context, set *CallerSet, err error) {
	if err != nil {
		t.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcomeError)))
		return
	}
	t.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcomeOK)))
	t.callers.Record(ctx, int64(set.Len()))
}

// reportInstrumentError hands an instrument-creation error to the global
// OpenTelemetry error handler, which logs it.
func reportInstrumentError(err error) {
	if err != nil {
		otel.Handle(err)
	}
}
