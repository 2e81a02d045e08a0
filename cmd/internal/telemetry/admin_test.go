package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

func TestAdminMetrics(t *testing.T) {
	isolateOTELEnv(t)
	tel := setupForTest(t, Options{ServiceName: "telemetry-admin-test"})
	h := tel.AdminHandler(nil)

	const name = "telemetry_test_assignments_total"
	outcome := map[string]string{"outcome": "assigned_elsewhere"}
	before := 0.0
	if m := findMetric(scrape(t, h), name, outcome); m != nil {
		before = m.GetCounter().GetValue()
	}
	// Recorded the way the other packages do: the global Meter, created
	// after Setup (instruments created before are covered elsewhere).
	counter, err := otel.Meter("github.com/walletprovider/recoveryservice/telemetry-test").
		Int64Counter("telemetry.test.assignments", metric.WithDescription("Test assignments by outcome."))
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(context.Background(), 3, metric.WithAttributes(attribute.String("outcome", "assigned_elsewhere")))
	counter.Add(context.Background(), 1, metric.WithAttributes(attribute.String("outcome", "new")))

	families := scrape(t, h)
	m := findMetric(families, name, outcome)
	if m == nil {
		t.Fatalf("%s{outcome=assigned_elsewhere} missing; families: %v", name, familyNames(families))
	}
	if got := m.GetCounter().GetValue() - before; got != 3 {
		t.Errorf("%s{outcome=assigned_elsewhere} grew by %v, want 3", name, got)
	}
	if findMetric(families, name, map[string]string{"otel_scope_name": "github.com/walletprovider/recoveryservice/telemetry-test"}) == nil {
		t.Errorf("%s lacks the otel_scope_name label naming the instrumenting package", name)
	}

	// Go runtime (contrib runtime) and process (Prometheus collector).
	for _, gauge := range []string{"go_goroutine_count", "go_memory_used_bytes", "process_resident_memory_bytes"} {
		fam, ok := families[gauge]
		if !ok || len(fam.GetMetric()) == 0 {
			t.Errorf("%s missing from /metrics", gauge)
			continue
		}
		if v := fam.GetMetric()[0].GetGauge().GetValue(); v <= 0 {
			t.Errorf("%s = %v, want > 0", gauge, v)
		}
	}
	if _, ok := families["go_schedule_duration_seconds"]; !ok {
		t.Errorf("go_schedule_duration_seconds (runtime producer) missing from /metrics")
	}
	if _, ok := families["process_cpu_seconds_total"]; !ok {
		t.Errorf("process_cpu_seconds_total missing from /metrics")
	}
	if findMetric(families, "target_info", nil) == nil {
		t.Errorf("target_info missing from /metrics")
	}
}

func TestAdminHealthAndReadiness(t *testing.T) {
	isolateOTELEnv(t)
	tel := setupForTest(t, Options{})
	var notReady atomic.Pointer[error]
	reason := errors.New("registry not reachable")
	notReady.Store(&reason)
	h := tel.AdminHandler(func() error {
		if e := notReady.Load(); e != nil {
			return *e
		}
		return nil
	})

	get := func(method, path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, path, nil))
		return rec.Code, rec.Body.String()
	}
	tests := []struct {
		step, method, path string
		wantCode           int
		wantBody           string
	}{
		{"live while not ready", http.MethodGet, "/healthz", http.StatusOK, "ok"},
		{"not ready yet", http.MethodGet, "/readyz", http.StatusServiceUnavailable, "not ready: registry not reachable"},
		{"ready", http.MethodGet, "/readyz", http.StatusOK, "ready"},
		{"live while ready", http.MethodGet, "/healthz", http.StatusOK, "ok"},
		{"HEAD is a probe too", http.MethodHead, "/readyz", http.StatusOK, ""},
		{"no writes", http.MethodPost, "/readyz", http.StatusMethodNotAllowed, ""},
		{"unknown path", http.MethodGet, "/debug/pprof/", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		if tt.step == "ready" {
			notReady.Store(nil)
		}
		code, body := get(tt.method, tt.path)
		if code != tt.wantCode {
			t.Errorf("%s: %s %s = %d, want %d", tt.step, tt.method, tt.path, code, tt.wantCode)
		}
		if tt.wantBody != "" && strings.TrimSpace(body) != tt.wantBody {
			t.Errorf("%s: %s %s body %q, want %q", tt.step, tt.method, tt.path, body, tt.wantBody)
		}
	}

	// A nil readiness function means always ready.
	rec := httptest.NewRecorder()
	tel.AdminHandler(nil).ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("nil ready: /readyz = %d, want 200", rec.Code)
	}
}

func TestServeAdminListenerServesAndShutsDown(t *testing.T) {
	isolateOTELEnv(t)
	tel := setupForTest(t, Options{})
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg       sync.WaitGroup
		serveErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveErr = ServeAdminListener(ctx, ln, tel.AdminHandler(nil))
	}()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		wg.Wait()
		t.Fatalf("GET /metrics over the network: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "go_goroutine_count") {
		t.Errorf("GET /metrics: %d, body without go_goroutine_count", resp.StatusCode)
	}

	cancel()
	wg.Wait()
	if serveErr != nil {
		t.Errorf("ServeAdminListener after cancel: %v, want nil", serveErr)
	}
	if conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", addr); err == nil {
		_ = conn.Close()
		t.Errorf("admin port %s still accepts connections after shutdown", addr)
	}
}

func TestServeAdminFailsOnBusyPort(t *testing.T) {
	isolateOTELEnv(t)
	tel := setupForTest(t, Options{})
	busy, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	err = ServeAdmin(context.Background(), busy.Addr().String(), tel.AdminHandler(nil))
	if err == nil || !strings.Contains(err.Error(), "admin listener on "+busy.Addr().String()) {
		t.Errorf("ServeAdmin on a busy port: %v, want an error naming the address", err)
	}
}

func familyNames[T any](families map[string]T) []string {
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	return names
}
