package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// adminAddress is where the run's admin server listens, from its log line
// (the tests ask for port 0).
func adminAddress(t *testing.T, logs string) string {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg     string `json:"msg"`
			Address string `json:"address"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving admin endpoints" {
			return rec.Address
		}
	}
	t.Fatalf("no \"serving admin endpoints\" line in the log")
	return ""
}

// scrape is one read of /metrics, parsed.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics GETs /metrics from the admin server at addr.
func scrapeMetrics(t *testing.T, addr string) scrape {
	t.Helper()
	code, body := adminGet(t, addr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v\n%s", err, body)
	}
	return families
}

// value sums, over the series of family name whose labels include every
// label of want, the counter value, or the observation count of a
// histogram. A family or series not (yet) there counts 0.
func (s scrape) value(name string, want map[string]string) float64 {
	f := s[name]
	if f == nil {
		return 0
	}
	var total float64
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			total += m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		case m.GetGauge() != nil:
			total += m.GetGauge().GetValue()
		}
	}
	return total
}

// TestMetricsAfterRealCalls scrapes the admin endpoint around real calls:
// every metric issue 4 names is there, and moved by exactly what the calls
// did. The README's metrics table lists every recovery_* family.
func TestMetricsAfterRealCalls(t *testing.T) {
	log, logs := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	srv := startReady(t, authenticatedConfig(t, up), log, Options{})
	addr := adminAddress(t, logs.String())
	ctx := withToken(testCtx(t), walletAPI.token)

	before := scrapeMetrics(t, addr)
	key := assignKey(t, ctx, srv.client, "user-metrics")
	assignKey(t, ctx, srv.client, "user-metrics") // a repeat
	if _, err := srv.client.SecureData(ctx, secureDataByKeyID(key.GetKeyId(), []byte("metrics seed"))); err != nil {
		t.Fatalf("SecureData: %v", err)
	}
	file := []byte(strings.Repeat("f", service.MinChunkBytes+12345))
	if _, err := sendFile(ctx, srv.client, fileHeader(key.GetKeyId()), file[:service.MinChunkBytes], file[service.MinChunkBytes:]); err != nil {
		t.Fatalf("SecureFile: %v", err)
	}
	_, err := srv.client.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: "bad"})
	wantStatus(t, err, codes.InvalidArgument, "INVALID_REQUEST", "key_id")
	_, err = srv.client.GetKey(testCtx(t), &recoveryv1.GetKeyRequest{KeyId: key.GetKeyId()})
	wantStatus(t, err, codes.Unauthenticated, "CALLER_TOKEN_MISSING")

	const rpc = "recovery.v1.RecoveryService/"
	expected := []struct {
		what   string
		family string
		labels map[string]string
		delta  float64
	}{
		{"gRPC calls per method and code", "rpc_server_call_duration_seconds",
			map[string]string{"rpc_method": rpc + "AssignKey", "rpc_response_status_code": "OK"}, 2},
		{"gRPC calls per method and code (stream)", "rpc_server_call_duration_seconds",
			map[string]string{"rpc_method": rpc + "SecureFile", "rpc_response_status_code": "OK"}, 1},
		{"gRPC calls per method and code (failure)", "rpc_server_call_duration_seconds",
			map[string]string{"rpc_method": rpc + "GetKey", "rpc_response_status_code": "INVALID_ARGUMENT"}, 1},
		{"upstream request count per endpoint and status", "recovery_upstream_requests_total",
			map[string]string{"endpoint": "POST " + sandbox.PathAssignKey, "status": "200"}, 1},
		{"upstream request latency per endpoint and status", "recovery_upstream_request_duration_seconds",
			map[string]string{"endpoint": "POST " + sandbox.PathSecureFile}, 1},
		{"signature verifications by result", "recovery_signature_verifications_total",
			map[string]string{"result": "valid"}, 1},
		{"assignments by outcome: new", "recovery_assignments_total", map[string]string{"outcome": "new"}, 1},
		{"assignments by outcome: repeat", "recovery_assignments_total", map[string]string{"outcome": "repeat"}, 1},
		{"SecureFile bytes", "recovery_secure_file_bytes_total", nil, float64(len(file))},
		{"registry latency", "recovery_registry_operation_duration_seconds",
			map[string]string{"operation": "ReserveAssignment", "backend": "sqlite"}, 2}, // the repeat reserves too
		{"upstream HTTP client (otelhttp)", "http_client_request_duration_seconds",
			map[string]string{"http_request_method": "POST"}, 3},
		{"callers authenticated", "recovery_auth_decisions_total",
			map[string]string{"stage": "authenticate", "outcome": "allowed"}, 5},
		{"callers refused", "recovery_auth_decisions_total",
			map[string]string{"stage": "authenticate", "outcome": "denied", "reason": "CALLER_TOKEN_MISSING"}, 1},
		// Refused from its headers (InTapHandle): no stream, so no call
		// metric; recovery_auth_decisions_total counts it.
		{"gRPC calls per method and code (refused before the call)", "rpc_server_call_duration_seconds",
			map[string]string{"rpc_method": rpc + "GetKey", "rpc_response_status_code": "UNAUTHENTICATED"}, 0},
	}
	// A call's server-side measurement is recorded when the server ends
	// the call, which may be just after the client has its answer: scrape
	// until every figure has settled (or a bound passes), then compare.
	var after scrape
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		after = scrapeMetrics(t, addr)
		settled := true
		for _, tc := range expected {
			settled = settled && after.value(tc.family, tc.labels)-before.value(tc.family, tc.labels) == tc.delta
		}
		if settled || time.Now().After(deadline) {
			break
		}
	}
	for _, tc := range expected {
		if got := after.value(tc.family, tc.labels) - before.value(tc.family, tc.labels); got != tc.delta {
			t.Errorf("%s: %s%v grew by %v, want %v", tc.what, tc.family, tc.labels, got, tc.delta)
		}
	}
	// Audit records: the three writes' records were committed before they
	// were answered; the others may still wait in the group writer.
	if got := after.value("recovery_audit_records_written_total", nil) - before.value("recovery_audit_records_written_total", nil); got < 3 {
		t.Errorf("audit records written grew by %v, want at least the 3 writes'", got)
	}
	if got := after.value("recovery_audit_records_failed_total", nil) - before.value("recovery_audit_records_failed_total", nil); got != 0 {
		t.Errorf("audit records failed: %v, want 0", got)
	}
	for _, runtime := range []string{"go_goroutine_count", "go_memory_used_bytes", "process_cpu_seconds_total"} {
		if after[runtime] == nil {
			t.Errorf("/metrics lacks the runtime metric %s", runtime)
		}
	}
	// Health checks are not measured.
	for _, m := range after["rpc_server_call_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "rpc_method" && strings.HasPrefix(l.GetValue(), "grpc.health.v1.") {
				t.Errorf("health call measured: %v", m)
			}
		}
	}

	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	for name := range after {
		if strings.HasPrefix(name, "recovery_") && !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("README's metrics table lacks %s", name)
		}
	}
}

// TestAdminPprofServesProfilesOnlyWhenAsked: with --admin-pprof the admin
// server also serves Go's runtime profiles (here the goroutine profile,
// which names recoveryd's own serving loop); without it /debug/pprof/ is
// not there, and /metrics answers either way. The command line is not
// served in either case.
func TestAdminPprofServesProfilesOnlyWhenAsked(t *testing.T) {
	upLog, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), upLog, nil)
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("pprof=%t", on), func(t *testing.T) {
			log, logs := newTestLogger(t)
			cfg := authenticatedConfig(t, up)
			cfg.AdminPprof = on
			startReady(t, cfg, log, Options{})
			addr := adminAddress(t, logs.String())

			code, body := adminGet(t, addr, "/debug/pprof/goroutine?debug=1")
			switch {
			case on && (code != http.StatusOK || !strings.Contains(body, "goroutine profile:") || !strings.Contains(body, "google.golang.org/grpc.(*Server).Serve")):
				t.Errorf("GET /debug/pprof/goroutine with --admin-pprof: %d, want 200 and a goroutine profile naming grpc's Serve:\n%.400s", code, body)
			case !on && code != http.StatusNotFound:
				t.Errorf("GET /debug/pprof/goroutine without --admin-pprof: %d, want 404", code)
			}
			// The command line is never served: a development
			// --database-url may carry a password.
			if code, body := adminGet(t, addr, "/debug/pprof/cmdline"); code != http.StatusNotFound {
				t.Errorf("GET /debug/pprof/cmdline: %d, want 404:\n%.200s", code, body)
			}
			if code, _ := adminGet(t, addr, "/metrics"); code != http.StatusOK {
				t.Errorf("GET /metrics: %d, want 200", code)
			}
		})
	}
}
