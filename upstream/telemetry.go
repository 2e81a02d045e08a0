package upstream

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names this package's tracer and meter.
const instrumentationName = "github.com/walletprovider/recoveryservice/upstream"

// Metric names, stable for dashboards and alerts.
const (
	metricRequests        = "recovery.upstream.requests"
	metricRequestDuration = "recovery.upstream.request.duration"
)

// Metric attribute keys; both have a handful of values only.
const (
	attrEndpoint = attribute.Key("endpoint")
	attrStatus   = attribute.Key("status")
)

// clientMetrics counts and times every HTTP attempt the client makes.
type clientMetrics struct {
	requests metric.Int64Counter
	duration metric.Float64Histogram
}

func newClientMetrics(mp metric.MeterProvider) (*clientMetrics, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter(instrumentationName)
	requests, err := meter.Int64Counter(metricRequests,
		metric.WithDescription("HTTP requests sent to the Partner Key Service, by endpoint and status (\"error\" when no response arrived)."),
		metric.WithUnit("{request}"))
	if err != nil {
		return nil, fmt.Errorf("creating metric %s: %w", metricRequests, err)
	}
	duration, err := meter.Float64Histogram(metricRequestDuration,
		metric.WithDescription("Time until the Partner Key Service answered (response headers), by endpoint and status."),
		metric.WithUnit("s"))
	if err != nil {
		return nil, fmt.Errorf("creating metric %s: %w", metricRequestDuration, err)
	}
	return &clientMetrics{requests: requests, duration: duration}, nil
}

// record notes one attempt; status 0 means no response arrived.
func (m *clientMetrics) record(ctx context.Context, e endpoint, status int, d time.Duration) {
	statusText := "error"
	if status != 0 {
		statusText = strconv.Itoa(status)
	}
	attrs := metric.WithAttributes(attrEndpoint.String(e.String()), attrStatus.String(statusText))
	// NOTE: record with a context that is not cancelled, so a cancelled call
	// is still counted by exporters that look at the context.
	ctx = context.WithoutCancel(ctx)
	m.requests.Add(ctx, 1, attrs)
	m.duration.Record(ctx, d.Seconds(), attrs)
}

func tracerFrom(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(instrumentationName)
}
