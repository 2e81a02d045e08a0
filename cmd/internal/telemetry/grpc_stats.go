package telemetry

import (
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc/stats"
)

// GRPCServerStatsHandler is the otelgrpc server stats handler recoveryd
// installs with grpc.StatsHandler: it continues the caller's trace from the
// traceparent/baggage metadata, opens the server span, and records
// rpc.server.call.duration per method and status code. Health checks and
// reflection are left out of both, since probes every few seconds would bury
// the calls that matter. opts are appended to those defaults.
func GRPCServerStatsHandler(opts ...otelgrpc.Option) stats.Handler {
	all := append([]otelgrpc.Option{otelgrpc.WithFilter(observeRPC)}, opts...)
	return otelgrpc.NewServerHandler(all...)
}

// Method prefixes of the standard services that are not traced or measured.
const (
	healthMethodPrefix     = "/grpc.health.v1.Health/"
	reflectionMethodPrefix = "/grpc.reflection." // v1 and v1alpha
)

// observeRPC is the otelgrpc filter: true means trace and measure the call.
func observeRPC(info *stats.RPCTagInfo) bool {
	m := info.FullMethodName
	return !strings.HasPrefix(m, healthMethodPrefix) && !strings.HasPrefix(m, reflectionMethodPrefix)
}
