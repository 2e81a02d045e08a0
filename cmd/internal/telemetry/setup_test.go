package telemetry

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/walletprovider/recoveryservice/cmd/internal/telemetry/otlptest"
)

// startProbeSpan starts and ends one span through the global API, the way
// the other packages do, and returns its context.
func startProbeSpan(name string) trace.SpanContext {
	_, span := otel.Tracer("github.com/walletprovider/recoveryservice/telemetry-test").Start(context.Background(), name)
	span.SetAttributes(attribute.String("key_id", "key-123"))
	span.End()
	return span.SpanContext()
}

func shutdownNow(t *testing.T, tel *Telemetry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestSetupExportsOverOTLP(t *testing.T) {
	tests := []struct {
		name        string
		protocol    string // OTEL_EXPORTER_OTLP_PROTOCOL
		env         map[string]string
		wantService string
		wantRes     map[string]string
	}{
		{
			name:        "grpc, default service name",
			protocol:    "grpc",
			wantService: "telemetry-test-default",
			wantRes:     map[string]string{"service.version": "v1.2.3"},
		},
		{
			name:        "http/protobuf, default service name",
			protocol:    "http/protobuf",
			wantService: "telemetry-test-default",
			wantRes:     map[string]string{"service.version": "v1.2.3"},
		},
		{
			name:     "grpc, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win",
			protocol: "grpc",
			env: map[string]string{
				"OTEL_SERVICE_NAME":        "recoveryd-canary",
				"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=staging,service.version=v9",
			},
			wantService: "recoveryd-canary",
			wantRes:     map[string]string{"deployment.environment.name": "staging", "service.version": "v9"},
		},
		{
			name:        "http/protobuf chosen by the traces-specific protocol variable",
			protocol:    "grpc",
			env:         map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
			wantService: "telemetry-test-default",
		},
		{
			name:        "no protocol set means http/protobuf",
			protocol:    "",
			wantService: "telemetry-test-default",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateOTELEnv(t)
			// Both receivers run; the protocol decides which one must get
			// the span, and the other must get nothing.
			grpcRcv, grpcURL := otlptest.StartGRPC(t)
			httpRcv, httpURL := otlptest.StartHTTP(t)
			wantHTTP := tt.protocol != "grpc" || tt.env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
			endpoint, want, other := grpcURL, &grpcRcv.Sink, &httpRcv.Sink
			if wantHTTP {
				endpoint, want, other = httpURL, &httpRcv.Sink, &grpcRcv.Sink
			}
			t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
			if tt.protocol != "" {
				t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tt.protocol)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}

			tel, err := Setup(context.Background(), Options{ServiceName: "telemetry-test-default", ServiceVersion: "v1.2.3"})
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			sc := startProbeSpan("otlp-probe")
			shutdownNow(t, tel)

			spans := want.Spans()
			if len(spans) != 1 {
				t.Fatalf("receiver got %d spans, want 1: %+v", len(spans), spans)
			}
			got := spans[0]
			if got.Name != "otlp-probe" {
				t.Errorf("span name %q, want otlp-probe", got.Name)
			}
			if got.TraceID != sc.TraceID().String() || got.SpanID != sc.SpanID().String() {
				t.Errorf("span ids %s/%s, want %s/%s", got.TraceID, got.SpanID, sc.TraceID(), sc.SpanID())
			}
			if got.ServiceName != tt.wantService {
				t.Errorf("service.name %q, want %q", got.ServiceName, tt.wantService)
			}
			for k, v := range tt.wantRes {
				if got.Resource[k] != v {
					t.Errorf("resource %s = %q, want %q (resource %v)", k, got.Resource[k], v, got.Resource)
				}
			}
			if got.Attrs["key_id"] != "key-123" {
				t.Errorf("span attribute key_id = %q, want key-123", got.Attrs["key_id"])
			}
			if n := other.RequestCount(); n != 0 {
				t.Errorf("the receiver for the other protocol got %d requests", n)
			}
			if len(httpRcv.BadRequests()) != 0 {
				t.Errorf("HTTP receiver rejected requests: %v", httpRcv.BadRequests())
			}
		})
	}
}

func TestSetupNoneExportsNothing(t *testing.T) {
	for _, value := range []string{"none", "", " NONE "} {
		t.Run("OTEL_TRACES_EXPORTER="+value, func(t *testing.T) {
			isolateOTELEnv(t)
			grpcRcv, endpoint := otlptest.StartGRPC(t)
			// Everything else points at a live receiver, so only the
			// exporter choice keeps the span from arriving.
			t.Setenv("OTEL_TRACES_EXPORTER", value)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
			t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")

			tel, err := Setup(context.Background(), Options{ServiceName: "telemetry-test"})
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			sc := startProbeSpan("none-probe")
			shutdownNow(t, tel)

			if n := grpcRcv.RequestCount(); n != 0 {
				t.Errorf("receiver got %d export requests with exporter %q", n, value)
			}
			// The trace still exists, so logs and the upstream call carry it.
			if !sc.IsValid() || !sc.IsSampled() {
				t.Errorf("span context %v: want a valid, sampled trace even without an exporter", sc)
			}
		})
	}
}

func TestSetupConsoleExporter(t *testing.T) {
	isolateOTELEnv(t)
	grpcRcv, endpoint := otlptest.StartGRPC(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "console,otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	var console bytes.Buffer
	tel, err := Setup(context.Background(), Options{ServiceName: "telemetry-test", ConsoleWriter: &console})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	sc := startProbeSpan("console-probe")
	shutdownNow(t, tel)

	out := console.String()
	for _, want := range []string{`"Name":"console-probe"`, sc.TraceID().String()} {
		if !strings.Contains(out, want) {
			t.Errorf("console output lacks %s:\n%s", want, out)
		}
	}
	if spans := grpcRcv.Spans(); len(spans) != 1 || spans[0].Name != "console-probe" {
		t.Errorf("with console,otlp the OTLP receiver got %+v, want the one span", spans)
	}
}

func TestSetupRejectsBadConfiguration(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		env      map[string]string
		wantText string // the error must name what to fix
	}{
		{"unknown exporter", Options{}, map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}, `OTEL_TRACES_EXPORTER="jaeger"`},
		{"one unknown in a list", Options{}, map[string]string{"OTEL_TRACES_EXPORTER": "otlp,zipkin"}, `"zipkin" is not supported`},
		{"exporter twice", Options{}, map[string]string{"OTEL_TRACES_EXPORTER": "otlp,otlp"}, "twice"},
		{"none with another", Options{}, map[string]string{"OTEL_TRACES_EXPORTER": "none,console"}, "none alone"},
		{"http/json protocol", Options{}, map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, `OTEL_EXPORTER_OTLP_PROTOCOL="http/json"`},
		{"bad traces protocol", Options{}, map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{"unknown sampler", Options{}, map[string]string{"OTEL_TRACES_SAMPLER": "xray"}, `OTEL_TRACES_SAMPLER="xray"`},
		{"ratio above one", Options{}, map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER_ARG"},
		{"ratio not a number", Options{}, map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "ten percent"}, "OTEL_TRACES_SAMPLER_ARG"},
		{"malformed resource attributes", Options{}, map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "no-equals-sign"}, "OTEL_RESOURCE_ATTRIBUTES"},
		{"no service name", Options{ServiceName: "-"}, nil, "ServiceName is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateOTELEnv(t)
			// A working Setup first: the failing one must leave it in place.
			mem := tracetest.NewInMemoryExporter()
			setupForTest(t, Options{SpanExporter: mem})

			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			opts := tt.opts
			switch opts.ServiceName {
			case "":
				opts.ServiceName = "telemetry-test"
			case "-":
				opts.ServiceName = ""
			}
			tel, err := Setup(context.Background(), opts)
			if err == nil {
				shutdownNow(t, tel)
				t.Fatal("Setup succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not mention %q", err, tt.wantText)
			}
			if tel != nil {
				t.Errorf("Setup returned a Telemetry with its error")
			}

			startProbeSpan("after-failed-setup")
			if spans := mem.GetSpans(); len(spans) != 1 || spans[0].Name != "after-failed-setup" {
				t.Errorf("after the failed Setup the earlier one got %d spans, want the probe: the failure changed the globals", len(spans))
			}
		})
	}
}

// TestSetupSamplerFromEnv proves the SDK reads OTEL_TRACES_SAMPLER(_ARG)
// itself, since Setup passes no sampler.
func TestSetupSamplerFromEnv(t *testing.T) {
	tests := []struct {
		sampler, arg string
		wantSampled  bool
	}{
		{"", "", true},
		{"always_on", "", true},
		{"always_off", "", false},
		{"parentbased_always_off", "", false},
		{"traceidratio", "0", false},
		{"traceidratio", "1", true},
		{"parentbased_traceidratio", "0.0", false},
	}
	for _, tt := range tests {
		t.Run(tt.sampler+"/"+tt.arg, func(t *testing.T) {
			isolateOTELEnv(t)
			if tt.sampler != "" {
				t.Setenv("OTEL_TRACES_SAMPLER", tt.sampler)
			}
			if tt.arg != "" {
				t.Setenv("OTEL_TRACES_SAMPLER_ARG", tt.arg)
			}
			mem := tracetest.NewInMemoryExporter()
			setupForTest(t, Options{SpanExporter: mem})

			sc := startProbeSpan("sampler-probe")
			if sc.IsSampled() != tt.wantSampled {
				t.Errorf("sampled = %v, want %v", sc.IsSampled(), tt.wantSampled)
			}
			wantSpans := 0
			if tt.wantSampled {
				wantSpans = 1
			}
			if n := len(mem.GetSpans()); n != wantSpans {
				t.Errorf("exported %d spans, want %d", n, wantSpans)
			}
		})
	}
}

func TestSetupInstallsW3CPropagation(t *testing.T) {
	isolateOTELEnv(t)
	mem := tracetest.NewInMemoryExporter()
	setupForTest(t, Options{SpanExporter: mem})

	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	carrier := propagationCarrier{"traceparent": traceparent, "baggage": "tenant=acme"}
	ctx := otel.GetTextMapPropagator().Extract(context.Background(), carrier)
	ctx, span := otel.Tracer("telemetry-test").Start(ctx, "child")
	span.End()

	if got := span.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("child trace id %s, want the incoming one", got)
	}
	out := propagationCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, out)
	if !strings.HasPrefix(out["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-"+span.SpanContext().SpanID().String()) {
		t.Errorf("outgoing traceparent %q does not continue the trace from the child span", out["traceparent"])
	}
	if out["baggage"] != "tenant=acme" {
		t.Errorf("outgoing baggage %q, want tenant=acme", out["baggage"])
	}
}

// propagationCarrier is a map carrier (propagation.MapCarrier would do; this
// keeps the assertions readable).
type propagationCarrier map[string]string

func (c propagationCarrier) Get(k string) string { return c[k] }
func (c propagationCarrier) Set(k, v string)     { c[k] = v }
func (c propagationCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
