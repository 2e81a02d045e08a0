package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Captured at package init, before any Setup, the way library packages
// capture theirs.
var (
	earlyTracer     = otel.Tracer("github.com/walletprovider/recoveryservice/telemetry-test/early")
	earlyCounter, _ = otel.Meter("github.com/walletprovider/recoveryservice/telemetry-test/early").
			Int64Counter("telemetry.test.early", metric.WithDescription("Counter created at package init."))
)

// TestTracersCapturedEarlyFollowEachSetup covers the global's delegate-once
// trap: without the switch, the second Setup would never see earlyTracer's
// spans.
func TestTracersCapturedEarlyFollowEachSetup(t *testing.T) {
	isolateOTELEnv(t)
	// SpanRecorders, not InMemoryExporters: an InMemoryExporter forgets its
	// spans when its provider shuts down.
	first := tracetest.NewSpanRecorder()
	telFirst := setupForTest(t, Options{SpanProcessor: first})
	_, span := earlyTracer.Start(context.Background(), "to-first")
	span.End()

	second := tracetest.NewSpanRecorder()
	telSecond := setupForTest(t, Options{SpanProcessor: second})
	_, span = earlyTracer.Start(context.Background(), "to-second")
	span.End()

	// Shutting the older one down must not switch off the newer.
	shutdownNow(t, telFirst)
	_, span = earlyTracer.Start(context.Background(), "to-second-after-first-shutdown")
	span.End()

	if got := spanNames(first); len(got) != 1 || got[0] != "to-first" {
		t.Errorf("first Setup got %v, want [to-first]", got)
	}
	if got := spanNames(second); len(got) != 2 || got[0] != "to-second" || got[1] != "to-second-after-first-shutdown" {
		t.Errorf("second Setup got %v, want [to-second to-second-after-first-shutdown]", got)
	}

	shutdownNow(t, telSecond)
	_, span = earlyTracer.Start(context.Background(), "after-all-shutdown")
	span.End()
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("after every Shutdown spans still record")
	}
	if got := spanNames(second); len(got) != 2 {
		t.Errorf("second Setup got %v after its Shutdown, want still the 2 spans", got)
	}
}

func TestInstrumentsCreatedEarlyReachEverySetupsMetrics(t *testing.T) {
	isolateOTELEnv(t)
	telFirst := setupForTest(t, Options{})
	shutdownNow(t, telFirst)
	tel := setupForTest(t, Options{})

	const name = "telemetry_test_early_total"
	before := 0.0
	if m := findMetric(scrape(t, tel.AdminHandler(nil)), name, nil); m != nil {
		before = m.GetCounter().GetValue()
	}
	earlyCounter.Add(context.Background(), 2)
	m := findMetric(scrape(t, tel.AdminHandler(nil)), name, nil)
	if m == nil {
		t.Fatalf("%s missing from /metrics of the second Setup", name)
	}
	if got := m.GetCounter().GetValue() - before; got != 2 {
		t.Errorf("%s grew by %v, want 2", name, got)
	}
}

func spanNames(r *tracetest.SpanRecorder) []string {
	var names []string
	for _, s := range r.Ended() {
		names = append(names, s.Name())
	}
	return names
}
