package telemetry

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The standard variables that choose the span exporters
// (opentelemetry-specification, "Environment Variable Specification").
const (
	envTracesExporter     = "OTEL_TRACES_EXPORTER"
	envOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envOTLPTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
)

// exporterKind is one OTEL_TRACES_EXPORTER entry, resolved.
type exporterKind string

const (
	exporterOTLPGRPC exporterKind = "otlp (grpc)"
	exporterOTLPHTTP exporterKind = "otlp (http/protobuf)"
	exporterConsole  exporterKind = "console"
)

// tracesExportersFromEnv reads OTEL_TRACES_EXPORTER (and, for otlp, the
// protocol) and says which exporters to build, without building any: a bad
// value must fail Setup before it changes anything.
func tracesExportersFromEnv() ([]exporterKind, error) {
	raw := strings.TrimSpace(os.Getenv(envTracesExporter))
	if raw == "" {
		return nil, nil // the default is none
	}
	names := strings.Split(raw, ",")
	kinds := make([]exporterKind, 0, len(names))
	seen := map[string]bool{}
	for _, n := range names {
		name := strings.ToLower(strings.TrimSpace(n))
		if seen[name] {
			return nil, fmt.Errorf("telemetry: %s=%q lists %q twice", envTracesExporter, raw, name)
		}
		seen[name] = true
		switch name {
		case "none":
			if len(names) > 1 {
				return nil, fmt.Errorf("telemetry: %s=%q combines none with other exporters; use none alone", envTracesExporter, raw)
			}
			return nil, nil
		case "otlp":
			kind, err := otlpProtocolFromEnv()
			if err != nil {
				return nil, err
			}
			kinds = append(kinds, kind)
		case "console":
			kinds = append(kinds, exporterConsole)
		default:
			return nil, fmt.Errorf("telemetry: %s=%q: %q is not supported; use otlp, console or none", envTracesExporter, raw, name)
		}
	}
	return kinds, nil
}

// otlpProtocolFromEnv applies the spec's precedence (the traces-specific
// variable over the general one) and default (http/protobuf).
func otlpProtocolFromEnv() (exporterKind, error) {
	variable := envOTLPTracesProtocol
	proto := strings.TrimSpace(os.Getenv(variable))
	if proto == "" {
		variable = envOTLPProtocol
		proto = strings.TrimSpace(os.Getenv(variable))
	}
	switch proto {
	case "", "http/protobuf":
		return exporterOTLPHTTP, nil
	case "grpc":
		return exporterOTLPGRPC, nil
	default:
		return "", fmt.Errorf("telemetry: %s=%q is not supported; use grpc or http/protobuf", variable, proto)
	}
}

// newSpanExporter builds one exporter. The OTLP exporters read the endpoint,
// headers, TLS, timeout and compression variables themselves.
func newSpanExporter(ctx context.Context, kind exporterKind, console io.Writer) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch kind {
	case exporterOTLPGRPC:
		exp, err = otlptracegrpc.New(ctx)
	case exporterOTLPHTTP:
		exp, err = otlptracehttp.New(ctx)
	case exporterConsole:
		if console == nil {
			console = os.Stdout
		}
		exp, err = stdouttrace.New(stdouttrace.WithWriter(console))
	default:
		err = fmt.Errorf("unknown exporter kind %q", kind)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: creating the %s span exporter: %w", kind, err)
	}
	return exp, nil
}
