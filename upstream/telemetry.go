package upstream

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/sony/gobreaker/v2"
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
	metricRetries         = "recovery.upstream.retries"
	metricDuplicates      = "recovery.upstream.possible_duplicates"
	metricBreakerState    = "recovery.upstream.breaker.state"
)

// Metric attribute keys; both have a handful of values only.
const (
	attrEndpoint = attribute.Key("endpoint")
	attrStatus   = attribute.Key("status")
	// attrAfter is why a retry was made: "nothing_done" (the attempt
	// certainly did nothing) or "ambiguous" (it may have acted).
	attrAfter = attribute.Key("after")
)

// clientMetrics counts and times every HTTP attempt the client makes.
type clientMetrics struct {
	requests   metric.Int64Counter
	duration   metric.Float64Histogram
	retries    metric.Int64Counter
	duplicates metric.Int64Counter
	breaker    metric.Int64Gauge
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
	retries, err := meter.Int64Counter(metricRetries,
		metric.WithDescription("Retries of upstream calls, by endpoint and whether the failed attempt may have acted (\"ambiguous\") or certainly did nothing (\"nothing_done\")."),
		metric.WithUnit("{retry}"))
	if err != nil {
		return nil, fmt.Errorf("creating metric %s: %w", metricRetries, err)
	}
	duplicates, err := meter.Int64Counter(metricDuplicates,
		metric.WithDescription("Calls that succeeded on a retry after an attempt that may have stored too: the upstream may hold an extra copy."),
		metric.WithUnit("{call}"))
	if err != nil {
		return nil, fmt.Errorf("creating metric %s: %w", metricDuplicates, err)
	}
	breaker, err := meter.Int64Gauge(metricBreakerState,
		metric.WithDescription("The upstream circuit breaker's state: 0 closed, 1 half-open, 2 open."),
		metric.WithUnit("{state}"))
	if err != nil {
		return nil, fmt.Errorf("creating metric %s: %w", metricBreakerState, err)
	}
	return &clientMetrics{requests: requests, duration: duration, retries: retries, duplicates: duplicates, breaker: breaker}, nil
}

// retry counts one retry of e; nothingDone is what the failed attempt did.
func (m *clientMetrics) retry(ctx context.Context, e endpoint, nothingDone bool) {
	after := "ambiguous"
	if nothingDone {
		after = "nothing_done"
	}
	m.retries.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(attrEndpoint.String(e.String()), attrAfter.String(after)))
}

// possibleDuplicate counts a call that may have left an extra copy.
func (m *clientMetrics) possibleDuplicate(ctx context.Context, e endpoint) {
	m.duplicates.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(attrEndpoint.String(e.String())))
}

// breakerState records the breaker's new state (gobreaker's numbering:
// closed 0, half-open 1, open 2).
func (m *clientMetrics) breakerState(s gobreaker.State) {
	m.breaker.Record(context.Background(), int64(s))
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
