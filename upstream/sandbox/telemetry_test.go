package sandbox_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestTelemetry: one server span per request named by route, carrying ids
// but never the token or key material; request metrics by route and status.
func TestTelemetry(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	oldTP, oldMP := otel.GetTracerProvider(), otel.GetMeterProvider()
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	t.Cleanup(func() { otel.SetTracerProvider(oldTP); otel.SetMeterProvider(oldMP) })

	h := start(t, sandbox.Config{})
	a := h.assign(assignRequest("alice", "org-1"))
	h.postJSON(sandbox.PathAssignKey, sandbox.DevPartnerToken, assignRequest("alice", "org-1")) // 409

	var assignSpans int
	for _, s := range spans.Ended() {
		if s.Name() != "sandbox POST /v1/partner/keys" {
			continue
		}
		assignSpans++
		for _, kv := range s.Attributes() {
			v := kv.Value.String()
			if strings.Contains(v, sandbox.DevPartnerToken) || strings.Contains(v, a.PublicKey[:100]) {
				t.Errorf("span attribute %s leaks a secret or key material", kv.Key)
			}
		}
	}
	if assignSpans != 2 {
		t.Fatalf("%d assign spans, want 2", assignSpans)
	}
	found := false
	for _, kv := range spans.Ended()[0].Attributes() {
		if kv.Key == "key_id" && kv.Value.AsString() == a.KeyID {
			found = true
		}
	}
	if !found {
		t.Errorf("the assign span lacks key_id: %v", spans.Ended()[0].Attributes())
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	statuses := map[int64]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "recovery.sandbox.requests" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				route, _ := dp.Attributes.Value("http.route")
				status, _ := dp.Attributes.Value("http.response.status_code")
				if route.AsString() == "POST /v1/partner/keys" {
					statuses[status.AsInt64()] += dp.Value
				}
			}
		}
	}
	if statuses[200] != 1 || statuses[409] != 1 {
		t.Fatalf("assign request counts by status %v, want one 200 and one 409", statuses)
	}
}
