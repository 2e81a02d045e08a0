package telemetry

import (
	"context"
	"io"
	"log/slog"
	"slices"

	"go.opentelemetry.io/otel/trace"
)

// SlogHandler returns a JSON log/slog handler writing to w at the given level
// (a slog.Level, or a *slog.LevelVar to change it at run time) that adds
// trace_id and span_id, at the top level, to every record logged with a
// context holding a valid span. That is what lets an on-call engineer go from
// a log line to its trace.
func SlogHandler(w io.Writer, level slog.Leveler) slog.Handler {
	base := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return &traceContextHandler{base: base, inner: base}
}

// traceContextHandler wraps a JSON handler. While no group is open, the ids
// are added to the record. Once WithGroup has opened one, record attributes
// would land inside it, so the ids are instead put on base (the handler as it
// was before the first group) and the later WithAttrs/WithGroup calls are
// replayed on top, keeping trace_id and span_id at the top level.
type traceContextHandler struct {
	base  slog.Handler                      // before the first WithGroup
	inner slog.Handler                      // base with every later call applied
	after []func(slog.Handler) slog.Handler // the calls since the first WithGroup
}

// Enabled implements slog.Handler.
func (h *traceContextHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle implements slog.Handler.
func (h *traceContextHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return h.inner.Handle(ctx, r)
	}
	ids := []slog.Attr{
		slog.String("trace_id", sc.TraceID().String()),
		slog.String("span_id", sc.SpanID().String()),
	}
	if len(h.after) == 0 {
		r = r.Clone() // the caller may still hold r
		r.AddAttrs(ids...)
		return h.inner.Handle(ctx, r)
	}
	withIDs := h.base.WithAttrs(ids)
	for _, apply := range h.after {
		withIDs = apply(withIDs)
	}
	return withIDs.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *traceContextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	if len(h.after) == 0 {
		next := h.base.WithAttrs(attrs)
		return &traceContextHandler{base: next, inner: next}
	}
	return &traceContextHandler{
		base:  h.base,
		inner: h.inner.WithAttrs(attrs),
		after: append(slices.Clip(h.after), func(x slog.Handler) slog.Handler { return x.WithAttrs(attrs) }),
	}
}

// WithGroup implements slog.Handler.
func (h *traceContextHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &traceContextHandler{
		base:  h.base,
		inner: h.inner.WithGroup(name),
		after: append(slices.Clip(h.after), func(x slog.Handler) slog.Handler { return x.WithGroup(name) }),
	}
}
