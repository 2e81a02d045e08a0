package service

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// The SDK providers are installed globally once: OTel's global delegation
// binds instruments and tracers to the first providers set.
var (
	telemetryOnce sync.Once
	spanRecorder  *tracetest.SpanRecorder
	metricReader  *sdkmetric.ManualReader
)

func installTelemetry() {
	telemetryOnce.Do(func() {
		spanRecorder = tracetest.NewSpanRecorder()
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spanRecorder)))
		metricReader = sdkmetric.NewManualReader()
		otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(metricReader)))
	})
}

// counter is the current value of the int64 counter name at the points
// carrying attr.
func counter(t *testing.T, name string, attr attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := metricReader.Collect(context.Background(), &rm); err != nil {
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
			for _, dp := range sum.DataPoints {
				if v, ok := dp.Attributes.Value(attr.Key); ok && v == attr.Value {
					total += dp.Value
				}
			}
		}
	}
	return total
}

// spansNamed are the ended spans called name that carry attr.
func spansNamed(name string, attr attribute.KeyValue) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spanRecorder.Ended() {
		if s.Name() != name {
			continue
		}
		for _, a := range s.Attributes() {
			if a == attr {
				out = append(out, s)
			}
		}
	}
	return out
}

// syncBuffer is a log sink safe for the handler goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestTelemetryOfAVerifiedAssignmentAndAnEncryption(t *testing.T) {
	installTelemetry()
	logs := &syncBuffer{}
	f := newFixture(t, fixtureOptions{logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})

	newBefore := counter(t, "recovery.assignments", attribute.String("outcome", outcomeNew))
	repeatBefore := counter(t, "recovery.assignments", attribute.String("outcome", outcomeRepeat))
	validBefore := counter(t, "recovery.signature.verifications", attribute.String("result", verificationValid))

	key := f.mustAssign("user-telemetry", "org-1")
	f.mustAssign("user-telemetry", "org-1")
	secret := []byte("telemetry must never see this seed phrase")
	if _, err := f.client.SecureData(t.Context(), &recoveryv1.SecureDataRequest{
		Key:     &recoveryv1.SecureDataRequest_KeyId{KeyId: key.GetKeyId()},
		Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: secret},
	}); err != nil {
		t.Fatalf("SecureData: %v", err)
	}
	// A failing request with plaintext must not log it either.
	_, err := f.client.SecureData(t.Context(), &recoveryv1.SecureDataRequest{
		Key:     &recoveryv1.SecureDataRequest_KeyId{KeyId: "6f1c2a9e-0000-4000-8000-000000000005"},
		Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: secret},
	})
	wantStatus(t, err, codes.NotFound, ReasonKeyNotFound)

	if d := counter(t, "recovery.assignments", attribute.String("outcome", outcomeNew)) - newBefore; d != 1 {
		t.Errorf("assignments{outcome=new} grew by %d, want 1", d)
	}
	if d := counter(t, "recovery.assignments", attribute.String("outcome", outcomeRepeat)) - repeatBefore; d != 1 {
		t.Errorf("assignments{outcome=repeat} grew by %d, want 1", d)
	}
	if d := counter(t, "recovery.signature.verifications", attribute.String("result", verificationValid)) - validBefore; d != 1 {
		t.Errorf("signature.verifications{result=valid} grew by %d, want 1", d)
	}

	verify := spansNamed("service.verify_signature", attribute.String("key_id", key.GetKeyId()))
	if len(verify) != 1 {
		t.Fatalf("%d service.verify_signature spans for the key, want 1", len(verify))
	}
	wantAttrs := map[attribute.Key]attribute.Value{
		"key_environment": attribute.StringValue("HOT"),
		"result":          attribute.StringValue(verificationValid),
	}
	for _, a := range verify[0].Attributes() {
		if want, ok := wantAttrs[a.Key]; ok && a.Value != want {
			t.Errorf("verify span %s = %v, want %v", a.Key, a.Value.String(), want.String())
		}
		delete(wantAttrs, a.Key)
	}
	if len(wantAttrs) > 0 {
		t.Errorf("verify span lacks %v", wantAttrs)
	}
	if enc := spansNamed("service.encrypt", attribute.Int("plaintext_size", len(secret))); len(enc) == 0 {
		t.Error("no service.encrypt span with the plaintext size")
	}

	// Nothing secret in any span attribute or log line.
	forbidden := []string{string(secret), hex.EncodeToString(secret), key.GetPublicKeyHex()}
	for _, s := range spanRecorder.Ended() {
		for _, a := range s.Attributes() {
			for _, bad := range forbidden {
				if strings.Contains(a.Value.String(), bad) {
					t.Errorf("span %s attribute %s carries secret or key material", s.Name(), a.Key)
				}
			}
		}
	}
	for _, bad := range forbidden[:2] {
		if strings.Contains(logs.String(), bad) {
			t.Error("the service log carries the plaintext")
		}
	}
	if !strings.Contains(logs.String(), "KEY_NOT_FOUND") {
		t.Error("the failed request was not logged with its reason")
	}
}
