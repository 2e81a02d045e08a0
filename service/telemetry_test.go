package service_test

import (
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
)

// The counters the tests read, by their Prometheus names (the OTel
// instrument's name with dots as underscores and a _total suffix).
const (
	assignmentsTotal   = "recovery_assignments_total"
	verificationsTotal = "recovery_signature_verifications_total"
)

// metrics is one scrape of recoveryd's admin /metrics endpoint, as an
// operator's Prometheus reads it. recoveryd's meters live as long as the
// process, shared by every fixture, so tests compare a scrape before with
// one after; each scrape gathers every family, so tests take few.
type metrics map[string]*dto.MetricFamily

// metrics scrapes the fixture's /metrics.
func (f *fixture) metrics(t *testing.T) metrics {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+f.adminAddr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	return families
}

// counter is counter family's value summed over the series whose labels
// include every one of labels; 0 when there is none yet.
func (m metrics) counter(family string, labels map[string]string) float64 {
	var total float64
	for _, series := range m[family].GetMetric() {
		have := map[string]string{}
		for _, l := range series.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if match {
			total += series.GetCounter().GetValue()
		}
	}
	return total
}

// assignments is recovery.assignments{outcome}.
func (m metrics) assignments(outcome string) float64 {
	return m.counter(assignmentsTotal, map[string]string{"outcome": outcome})
}

// verifications is recovery.signature.verifications{result}.
func (m metrics) verifications(result string) float64 {
	return m.counter(verificationsTotal, map[string]string{"result": result})
}

// spansNamed are the ended spans of the fixture's run called name that
// carry attr.
func (f *fixture) spansNamed(name string, attr attribute.KeyValue) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range f.spans.Ended() {
		if s.Name() == name && slices.Contains(s.Attributes(), attr) {
			out = append(out, s)
		}
	}
	return out
}

func TestTelemetryOfAVerifiedAssignmentAndAnEncryption(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	logs := f.logs

	before := f.metrics(t)

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
	wantStatus(t, err, codes.NotFound, service.ReasonKeyNotFound)

	after := f.metrics(t)
	if d := after.assignments("new") - before.assignments("new"); d != 1 {
		t.Errorf("assignments{outcome=new} grew by %v, want 1", d)
	}
	if d := after.assignments("repeat") - before.assignments("repeat"); d != 1 {
		t.Errorf("assignments{outcome=repeat} grew by %v, want 1", d)
	}
	if d := after.verifications("valid") - before.verifications("valid"); d != 1 {
		t.Errorf("signature.verifications{result=valid} grew by %v, want 1", d)
	}

	verify := f.spansNamed("service.verify_signature", attribute.String("key_id", key.GetKeyId()))
	if len(verify) != 1 {
		t.Fatalf("%d service.verify_signature spans for the key, want 1", len(verify))
	}
	wantAttrs := map[attribute.Key]attribute.Value{
		"key_environment": attribute.StringValue("HOT"),
		"result":          attribute.StringValue("valid"),
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
	if enc := f.spansNamed("service.encrypt", attribute.Int("plaintext_size", len(secret))); len(enc) == 0 {
		t.Error("no service.encrypt span with the plaintext size")
	}

	// Nothing secret in any span attribute or log line.
	forbidden := []string{string(secret), hex.EncodeToString(secret), key.GetPublicKeyHex()}
	for _, s := range f.spans.Ended() {
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
