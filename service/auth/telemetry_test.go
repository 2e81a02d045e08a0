package auth_test

import (
	"context"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/walletprovider/recoveryservice/service/auth"
)

// sumOf is the value of the int64 sum metric name at the data point whose
// attributes include every attr (0 when absent).
func sumOf(t *testing.T, reader *sdkmetric.ManualReader, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T, want an int64 sum", name, m.Data)
			}
		dataPoints:
			for _, dp := range sum.DataPoints {
				for _, want := range attrs {
					if got, ok := dp.Attributes.Value(want.Key); !ok || got != want.Value {
						continue dataPoints
					}
				}
				total += dp.Value
			}
		}
	}
	return total
}

// metricsReader is the reader of the SDK meter provider installed once per
// test process.
//
// NOTE: once: the global delegate forwards the package's instruments to the
// first provider set and never to a later one, so a second installation (as
// with -count=2) would read nothing.
var metricsReader = sync.OnceValue(func() *sdkmetric.ManualReader {
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	return reader
})

// TestDecisionsAndReloadsAreCounted installs an SDK meter provider (the
// only test that does; instruments created before it are forwarded by the
// global delegate) and checks the counters move with refusals, grants,
// denials and reloads.
func TestDecisionsAndReloadsAreCounted(t *testing.T) {
	reader := metricsReader()

	path := testCallersFile(t)
	a := newAuthenticator(t, auth.Config{CallersFile: path}, nil)
	conn := dial(t, startServer(t, a, nil), nil)

	invalid := []attribute.KeyValue{attribute.String("stage", "authenticate"), attribute.String("outcome", "denied"), attribute.String("reason", "CALLER_TOKEN_INVALID")}
	allowed := []attribute.KeyValue{attribute.String("stage", "authenticate"), attribute.String("outcome", "allowed")}
	orgDenied := []attribute.KeyValue{attribute.String("stage", "authorize"), attribute.String("reason", "ORGANISATION_NOT_ALLOWED")}
	reloadErr := []attribute.KeyValue{attribute.String("outcome", "error")}
	beforeInvalid := sumOf(t, reader, "recovery.auth.decisions", invalid...)
	beforeAllowed := sumOf(t, reader, "recovery.auth.decisions", allowed...)
	beforeOrg := sumOf(t, reader, "recovery.auth.decisions", orgDenied...)
	beforeReloadErr := sumOf(t, reader, "recovery.auth.callers_file.reloads", reloadErr...)

	for range 3 {
		_, _ = getKeyAs(withAuthorization(t, "Bearer not-a-known-token"), conn)
	}
	for range 2 {
		if _, err := getKeyAs(withAuthorization(t, "Bearer "+tokenWalletAPI), conn); err != nil {
			t.Fatal(err)
		}
	}
	ctx := auth.WithCaller(context.Background(), auth.Caller{Name: "c", Organisations: []string{"org-1"}})
	_ = auth.Enforced.Authorize(ctx, "org-2")
	replaceFile(t, path, `{}`, 0o600)
	_ = a.Reload()

	for _, c := range []struct {
		what        string
		name        string
		attrs       []attribute.KeyValue
		before, add int64
	}{
		{"refused tokens", "recovery.auth.decisions", invalid, beforeInvalid, 3},
		{"authenticated calls", "recovery.auth.decisions", allowed, beforeAllowed, 2},
		{"organisation denials", "recovery.auth.decisions", orgDenied, beforeOrg, 1},
		{"failed reloads", "recovery.auth.callers_file.reloads", reloadErr, beforeReloadErr, 1},
	} {
		if got := sumOf(t, reader, c.name, c.attrs...); got != c.before+c.add {
			t.Errorf("%s: %s went from %d to %d, want +%d", c.what, c.name, c.before, got, c.add)
		}
	}
}
