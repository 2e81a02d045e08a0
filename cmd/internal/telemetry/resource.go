package telemetry

import (
	"context"
	"fmt"
	"runtime/debug"

	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// newResource describes this process: the caller's service name and version
// as defaults, overridden by OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
//
// NOTE: detectors merge in order and a later one wins, so the environment
// comes after the defaults.
func newResource(ctx context.Context, serviceName, serviceVersion string) (*resource.Resource, error) {
	defaults := []resource.Option{resource.WithTelemetrySDK()}
	if serviceVersion != "" {
		defaults = append(defaults, resource.WithAttributes(semconv.ServiceVersion(serviceVersion)))
	}
	defaults = append(defaults,
		resource.WithAttributes(semconv.ServiceName(serviceName)),
		resource.WithFromEnv(),
	)
	res, err := resource.New(ctx, defaults...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: building the resource (check OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	return res, nil
}

// BuildVersion is the main module's version as the Go toolchain recorded it
// in the binary ("(devel)" for a local build), for Options.ServiceVersion, so
// a trace says which build served it.
func BuildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return ""
}
