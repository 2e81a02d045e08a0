package registry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestTelemetry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		spans := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		s := db.mustOpen(t, WithTracerProvider(tp), WithMeterProvider(mp))
		ctx := context.Background()

		res, err := s.ReserveAssignment(ctx, terms(1, 1), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		k := testKey(1)
		if err := s.CompleteAssignment(ctx, res.Token, k); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReserveAssignment(ctx, terms(1, 1), time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetKey(ctx, "key-none"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if err := s.ReleaseAssignment(ctx, res.Token); !errors.Is(err, ErrReservationLost) {
			t.Fatal(err)
		}
		backup, err := s.ReserveBackup(ctx, "wallet-api", "idem-secret-value", "hash", time.Minute)
		if err != nil {
			t.Fatal(err)
		}

		type want struct {
			name, outcome string
			status        codes.Code
		}
		wants := []want{
			{"registry.ReserveAssignment", "reserved", codes.Unset},
			{"registry.CompleteAssignment", "ok", codes.Unset},
			{"registry.ReserveAssignment", "recorded", codes.Unset},
			{"registry.GetKey", "not_found", codes.Unset},
			{"registry.ReleaseAssignment", "reservation_lost", codes.Error},
			{"registry.ReserveBackup", "reserved", codes.Unset},
		}
		ended := spans.Ended()
		if len(ended) != len(wants) {
			t.Fatalf("%d spans ended, want %d", len(ended), len(wants))
		}
		secrets := []string{res.Token, backup.Token, "idem-secret-value", strings.ToLower(k.PublicKeyHex), k.PublicKeyHex}
		for i, sp := range ended {
			attrs := map[attribute.Key]string{}
			for _, kv := range sp.Attributes() {
				attrs[kv.Key] = kv.Value.String()
				for _, secret := range secrets {
					if strings.Contains(kv.Value.String(), secret) {
						t.Errorf("span %s attribute %s carries a secret", sp.Name(), kv.Key)
					}
				}
			}
			for _, secret := range secrets {
				if strings.Contains(sp.Status().Description, secret) {
					t.Errorf("span %s status carries a secret", sp.Name())
				}
			}
			w := wants[i]
			if sp.Name() != w.name || attrs["outcome"] != w.outcome || sp.Status().Code != w.status {
				t.Errorf("span %d = %s outcome %q status %v; want %s outcome %q status %v",
					i, sp.Name(), attrs["outcome"], sp.Status().Code, w.name, w.outcome, w.status)
			}
			if attrs["db.system"] != db.backend {
				t.Errorf("span %s db.system = %q, want %q", sp.Name(), attrs["db.system"], db.backend)
			}
		}

		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		counts := map[string]uint64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name != "recovery.registry.operation.duration" {
					continue
				}
				if m.Unit != "s" {
					t.Errorf("unit = %q, want s", m.Unit)
				}
				hist, ok := m.Data.(metricdata.Histogram[float64])
				if !ok {
					t.Fatalf("data is %T, want a float64 histogram", m.Data)
				}
				for _, dp := range hist.DataPoints {
					op, _ := dp.Attributes.Value("operation")
					backend, _ := dp.Attributes.Value("backend")
					if backend.AsString() != db.backend || dp.Attributes.Len() != 2 {
						t.Errorf("data point attributes %v; want operation and backend=%s only", dp.Attributes.ToSlice(), db.backend)
					}
					counts[op.AsString()] += dp.Count
				}
			}
		}
		wantCounts := map[string]uint64{"ReserveAssignment": 2, "CompleteAssignment": 1, "GetKey": 1, "ReleaseAssignment": 1, "ReserveBackup": 1}
		for op, n := range wantCounts {
			if counts[op] != n {
				t.Errorf("histogram count for %s = %d, want %d (all: %v)", op, counts[op], n, counts)
			}
		}
	})
}
