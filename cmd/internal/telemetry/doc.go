// Package telemetry is the observability plumbing shared by recoveryd and
// sandboxd: it installs the OpenTelemetry SDK behind the global API the other
// packages already call, serves Prometheus metrics and health on an admin
// port, and writes JSON logs that carry the active trace and span ids.
//
// The library packages (service/, upstream/, service/registry/, keycrypto/)
// never import this package: they create spans and instruments through
// go.opentelemetry.io/otel, and [Setup] decides where those go.
//
// # Traces
//
// Exporters are chosen only by the standard environment variables, read when
// [Setup] runs:
//
//	OTEL_TRACES_EXPORTER          otlp | console | none (default none); a comma-separated list is allowed
//	OTEL_EXPORTER_OTLP_PROTOCOL   grpc | http/protobuf (default http/protobuf);
//	                              OTEL_EXPORTER_OTLP_TRACES_PROTOCOL takes precedence
//	OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, _HEADERS, _INSECURE,
//	_TIMEOUT, _COMPRESSION, _CERTIFICATE …
//	                              read by the official OTLP exporters themselves
//	OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
//	                              the resource; service.name defaults to Options.ServiceName
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
//	                              read by the SDK (default parentbased_always_on); Setup
//	                              rejects values the SDK would silently ignore
//	OTEL_BSP_*                    batch span processor tuning, read by the SDK
//
// With none, spans are still created and sampled, so trace ids still reach the
// logs and traceparent still propagates to the upstream; they are only not
// exported. The propagator is W3C TraceContext plus Baggage.
//
// Setup may run more than once in a process (tests do): the global
// TracerProvider is a process-wide switch that always forwards to the SDK
// provider of the latest Setup, so tracers that packages captured at init
// follow it. The MeterProvider and its Prometheus registry are created by the
// first Setup and kept for the life of the process, for the same reason:
// instruments that packages create once stay connected to /metrics.
//
// # Metrics
//
// [Telemetry.AdminHandler] serves them as Prometheus text on /metrics. OTel
// names are translated the Prometheus way: dots become underscores, the unit
// becomes a suffix (_seconds, _bytes) and counters end in _total. Every series
// also carries otel_scope_name (the instrumenting package). What a recoveryd
// scrape holds:
//
//	rpc_server_call_duration_seconds{rpc_method, rpc_response_status_code, error_type}
//	    histogram, from otelgrpc (rpc.server.call.duration) through
//	    [GRPCServerStatsHandler]; rpc_method is "recovery.v1.RecoveryService/AssignKey",
//	    rpc_response_status_code the canonical gRPC code ("OK", "INVALID_ARGUMENT", …),
//	    error_type set for server-side failures only. Its _count is the number of
//	    calls per method and code. Health and reflection calls are not recorded.
//	http_client_request_duration_seconds{http_request_method, http_response_status_code, server_address, …}
//	    histogram, from otelhttp on the upstream client (and
//	    http_server_request_duration_seconds on sandboxd's server side).
//	recovery_upstream_requests_total, recovery_upstream_request_duration_seconds, …
//	    the project's own instruments, named recovery.<area>.<what> by the
//	    packages that own them (upstream/, service/, service/registry/); see
//	    the README for the full list.
//	go_memory_used_bytes, go_memory_allocated_bytes_total, go_memory_gc_goal_bytes,
//	go_goroutine_count, go_processor_limit, go_config_gogc_percent, go_schedule_duration_seconds
//	    Go runtime, from go.opentelemetry.io/contrib/instrumentation/runtime.
//	process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, …
//	    the process, from the Prometheus process collector.
//	target_info
//	    the resource (service.name, service.version, …) as labels.
//
// /healthz answers 200 while the process runs; /readyz answers 200 when the
// readiness function returns nil and 503 with its reason otherwise.
//
// # Logs
//
// [SlogHandler] is a JSON log/slog handler that adds trace_id and span_id to
// every record whose context holds a valid span, so a log line leads to its
// trace. [ParseLevel] reads the --log-level flag.
package telemetry
