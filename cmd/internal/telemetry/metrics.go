package telemetry

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/contrib/instrumentation/runtime"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// processMeters is the MeterProvider and the Prometheus registry it feeds.
// There is one per process: instruments that packages create once (at init or
// in a constructor) are bound to the first global MeterProvider for good, so
// a second provider would never see them.
type processMeters struct {
	registry *prometheus.Registry
	provider *sdkmetric.MeterProvider
}

var (
	processMetersMu sync.Mutex
	processMetersV  *processMeters
)

// processMetersFor returns the process's meters, creating them with res on
// the first call. Later calls keep the first resource (target_info).
func processMetersFor(res *resource.Resource) (*processMeters, error) {
	processMetersMu.Lock()
	defer processMetersMu.Unlock()
	if processMetersV != nil {
		return processMetersV, nil
	}
	m, err := newProcessMeters(res)
	if err != nil {
		return nil, err
	}
	otel.SetMeterProvider(m.provider)
	processMetersV = m
	return m, nil
}

func newProcessMeters(res *resource.Resource) (*processMeters, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("telemetry: registering the process collector: %w", err)
	}
	exporter, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		// The scheduling-latency histogram (go.schedule.duration) comes from
		// a producer; the other runtime metrics from runtime.Start below.
		otelprom.WithProducer(runtime.NewProducer()),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: creating the Prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithResource(res))
	if err := runtime.Start(runtime.WithMeterProvider(mp)); err != nil {
		return nil, fmt.Errorf("telemetry: starting Go runtime metrics: %w", err)
	}
	return &processMeters{registry: reg, provider: mp}, nil
}
