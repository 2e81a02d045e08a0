package upstream

import (
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// recordOutcome marks a call's span with its outcome; the caller ends the
// span (deferred right after Start, so it runs after this). Only the kind
// and status are recorded, never upstream text, which could echo request
// content.
func recordOutcome(span trace.Span, err error) {
	if err == nil {
		return
	}
	var uerr *Error
	if errors.As(err, &uerr) {
		span.SetAttributes(
			attribute.String("upstream.error_kind", uerr.Kind.String()),
			attribute.Int("http.response.status_code", uerr.Status),
			attribute.Bool("upstream.sent", uerr.Sent))
		span.SetStatus(codes.Error, "upstream "+uerr.Kind.String())
		return
	}
	span.SetStatus(codes.Error, "upstream call failed")
}
