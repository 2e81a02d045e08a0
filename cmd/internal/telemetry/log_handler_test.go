package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func TestSlogHandlerAddsTraceContext(t *testing.T) {
	// A local SDK provider: the handler reads the span from the context and
	// needs no global.
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	spanCtx, span := tp.Tracer("telemetry-test").Start(context.Background(), "log-probe")
	defer span.End()
	sc := span.SpanContext()

	tests := []struct {
		name      string
		ctx       context.Context
		log       func(*slog.Logger, context.Context)
		wantIDs   bool
		wantPaths map[string]any // dotted path → value in the JSON line
	}{
		{
			name:    "no span, no ids",
			ctx:     context.Background(),
			log:     func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "call", "method", "AssignKey") },
			wantIDs: false, wantPaths: map[string]any{"method": "AssignKey"},
		},
		{
			name:    "active span",
			ctx:     spanCtx,
			log:     func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "call", "method", "AssignKey") },
			wantIDs: true, wantPaths: map[string]any{"method": "AssignKey"},
		},
		{
			name: "With attributes stay, ids added",
			ctx:  spanCtx,
			log: func(l *slog.Logger, ctx context.Context) {
				l.With("component", "registry").InfoContext(ctx, "call", "key_id", "k-1")
			},
			wantIDs: true, wantPaths: map[string]any{"component": "registry", "key_id": "k-1"},
		},
		{
			name: "ids stay at the top level inside groups",
			ctx:  spanCtx,
			log: func(l *slog.Logger, ctx context.Context) {
				l.With("component", "upstream").WithGroup("http").With("status", 409).WithGroup("req").InfoContext(ctx, "call", "path", "/v1/partner/keys")
			},
			wantIDs: true,
			wantPaths: map[string]any{
				"component": "upstream", "http.status": 409.0, "http.req.path": "/v1/partner/keys",
			},
		},
		{
			name: "Log with an explicit context (the go-grpc-middleware adapter's path)",
			ctx:  spanCtx,
			log: func(l *slog.Logger, ctx context.Context) {
				l.Log(ctx, slog.LevelWarn, "finished call", "grpc.code", "NotFound")
			},
			wantIDs: true, wantPaths: map[string]any{"grpc.code": "NotFound", "level": "WARN"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(slog.New(SlogHandler(&buf, slog.LevelInfo)), tt.ctx)
			line := decodeOneLine(t, buf.String())

			traceID, hasTrace := line["trace_id"]
			spanID, hasSpan := line["span_id"]
			if tt.wantIDs {
				if traceID != sc.TraceID().String() || spanID != sc.SpanID().String() {
					t.Errorf("trace_id %v span_id %v, want %s %s (line %v)", traceID, spanID, sc.TraceID(), sc.SpanID(), line)
				}
			} else if hasTrace || hasSpan {
				t.Errorf("ids on a line logged without a span: %v", line)
			}
			for path, want := range tt.wantPaths {
				if got := lookupPath(line, path); got != want {
					t.Errorf("%s = %#v, want %#v (line %v)", path, got, want, line)
				}
			}
		})
	}
}

func TestSlogHandlerLevel(t *testing.T) {
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	logger := slog.New(SlogHandler(&buf, level))

	logger.Info("hidden")
	logger.Warn("shown")
	level.Set(slog.LevelDebug)
	logger.Debug("shown after the level changed")

	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Errorf("an Info line passed a Warn level:\n%s", out)
	}
	for _, want := range []string{`"msg":"shown"`, `"msg":"shown after the level changed"`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in:\n%s", want, out)
		}
	}
}

func TestSlogHandlerIgnoresInvalidSpanContext(t *testing.T) {
	var buf bytes.Buffer
	// A context with a span context that is not valid (zero ids).
	ctx := trace.ContextWithSpanContext(context.Background(), trace.SpanContext{})
	slog.New(SlogHandler(&buf, slog.LevelInfo)).InfoContext(ctx, "call")
	if line := decodeOneLine(t, buf.String()); line["trace_id"] != nil {
		t.Errorf("trace_id on a line whose span context is invalid: %v", line)
	}
}

func decodeOneLine(t *testing.T, out string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one JSON line, got %d:\n%s", len(lines), out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("line is not JSON: %v\n%s", err, lines[0])
	}
	return m
}

// lookupPath follows a dotted path through nested JSON objects; a key that
// itself contains a dot (grpc.code) is tried whole first.
func lookupPath(m map[string]any, path string) any {
	if v, ok := m[path]; ok {
		return v
	}
	head, rest, found := strings.Cut(path, ".")
	if !found {
		return nil
	}
	sub, ok := m[head].(map[string]any)
	if !ok {
		return nil
	}
	return lookupPath(sub, rest)
}
