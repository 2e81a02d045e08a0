package upstream

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestTelemetry: each HTTP attempt is an otelhttp span named after the
// route and is counted and timed by endpoint and status; no span carries
// the token.
func TestTelemetry(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()

	emu, _ := startSandbox(t, sandbox.Config{})
	withTelemetry := func(cfg *Config) { cfg.TracerProvider = tp; cfg.MeterProvider = mp }
	c := emu.client(t, sandbox.DevPartnerToken, withTelemetry)
	ctx := context.Background()
	key := assignTestKey(t, c, "telemetry-user")
	ct, sum := sealed(t, key.PublicKey, []byte("secret"))
	if _, err := c.SecureData(ctx, SecureDataRequest{PublicKey: key.PublicKey, Ciphertext: ct, Checksum: sum}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SecureFile(ctx, SecureFileRequest{PublicKey: key.PublicKey, File: strings.NewReader("file")}); err != nil {
		t.Fatal(err)
	}
	if _, err := emu.client(t, "wrong-token", withTelemetry).AssignKey(ctx, validAssign()); err == nil {
		t.Fatal("want a 401")
	}

	refused := newTestClient(t, "http://"+closedAddr(t), withTelemetry)
	refused.wait = func(context.Context, time.Duration) error { return nil }
	if _, err := refused.AssignKey(ctx, validAssign()); err == nil {
		t.Fatal("want a refused connection")
	}

	names := map[string]int{}
	for _, s := range spans.Ended() {
		names[s.Name()]++
		for _, kv := range s.Attributes() {
			if v := kv.Value.String(); strings.Contains(v, sandbox.DevPartnerToken) || strings.Contains(v, "wrong-token") || strings.Contains(v, sum) {
				t.Errorf("span %s attribute %s = %q leaks a secret or the request", s.Name(), kv.Key, v)
			}
		}
	}
	for name, want := range map[string]int{
		"POST /v1/partner/keys": 5, "POST /v1/partner/secure/data": 1, "POST /v1/partner/secure/file": 1,
		"upstream.AssignKey": 3, "upstream.SecureData": 1, "upstream.SecureFile": 1,
	} {
		if names[name] != want {
			t.Errorf("%d spans named %q, want %d (all: %v)", names[name], name, want, names)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	histograms := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != instrumentationName {
			continue
		}
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name == metricRequests {
					for _, dp := range data.DataPoints {
						counts[attrKey(dp.Attributes)] += dp.Value
					}
				}
			case metricdata.Histogram[float64]:
				if m.Name == metricRequestDuration && m.Unit == "s" {
					for _, dp := range data.DataPoints {
						histograms[attrKey(dp.Attributes)] += dp.Count
					}
				}
			}
		}
	}
	want := map[string]int64{
		"POST /v1/partner/keys 200": 1, "POST /v1/partner/keys 401": 1, "POST /v1/partner/keys error": 3,
		"POST /v1/partner/secure/data 200": 1, "POST /v1/partner/secure/file 200": 1,
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("%s = %v, want %v", metricRequests, counts, want)
	}
	for k, v := range want {
		if v < 0 || histograms[k] != uint64(v) {
			t.Errorf("%s{%s} count = %d, want %d", metricRequestDuration, k, histograms[k], v)
		}
	}
}

func attrKey(set attribute.Set) string {
	endpoint, _ := set.Value(attrEndpoint)
	status, _ := set.Value(attrStatus)
	return endpoint.AsString() + " " + status.AsString()
}
