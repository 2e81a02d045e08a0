package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// tryAssign posts an assignment and reports the status, or the transport
// error when the emulator gave no complete answer.
func (h *harness) tryAssign(user string) (int, http.Header, error) {
	h.t.Helper()
	body, err := json.Marshal(assignRequest(user, "org-1"))
	if err != nil {
		h.t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, h.http.URL+sandbox.PathAssignKey, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sandbox.DevPartnerToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		return resp.StatusCode, resp.Header, err
	}
	return resp.StatusCode, resp.Header, nil
}

// TestFaults: each fault kind, drawn every time, does to the exchange and
// to the emulator's state what sandboxd's --faults promises, and is counted
// where a test can compare it with what the client saw.
func TestFaults(t *testing.T) {
	tests := []struct {
		kind string
		// status is the answer's status; 0 means no complete answer.
		status int
		// assigned: the emulator processed the request (a key exists).
		assigned bool
	}{
		{kind: sandbox.Fault500, status: http.StatusInternalServerError},
		{kind: sandbox.Fault503, status: http.StatusServiceUnavailable},
		{kind: sandbox.Fault429, status: http.StatusTooManyRequests},
		{kind: sandbox.FaultResetBefore},
		{kind: sandbox.FaultResetAfter, assigned: true},
		{kind: sandbox.FaultTruncated, status: http.StatusOK, assigned: true},
		{kind: sandbox.FaultSlow, status: http.StatusOK, assigned: true},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			h := start(t, sandbox.Config{Faults: map[string]float64{tt.kind: 1}, FaultDelay: 10 * time.Millisecond})
			status, header, err := h.tryAssign("alice")
			switch {
			case tt.status == 0 && (err == nil || status != 0):
				// NOTE: a status line, even one followed by a cut body, is an
				// answer: the client must not get one.
				t.Fatalf("answered %d (%v), want the connection closed without an answer", status, err)
			case tt.status != 0 && status != tt.status:
				t.Fatalf("status %d (%v), want %d", status, err, tt.status)
			case tt.kind == sandbox.FaultTruncated && err == nil:
				t.Fatal("the whole body arrived; want it cut off")
			case tt.kind != sandbox.FaultTruncated && tt.status != 0 && err != nil:
				t.Fatalf("reading the answer: %v", err)
			}
			if tt.kind == sandbox.Fault429 && header.Get("Retry-After") != "1" {
				t.Errorf("Retry-After = %q, want 1", header.Get("Retry-After"))
			}
			if got := len(h.inspect.Keys(t)); got != map[bool]int{false: 0, true: 1}[tt.assigned] {
				t.Errorf("%d keys assigned, want processed=%v", got, tt.assigned)
			}
			counts := h.inspect.Faults(t)
			if counts.Requests != 1 || counts.Injected[tt.kind] != 1 || len(counts.Injected) != 1 {
				t.Errorf("fault counts = %+v, want 1 request and 1 %s", counts, tt.kind)
			}
		})
	}
}

// TestFaultsSpareTheOtherEndpoints: the JWKS, health and inspection
// endpoints answer even when every partner request fails.
func TestFaultsSpareTheOtherEndpoints(t *testing.T) {
	h := start(t, sandbox.Config{Faults: map[string]float64{sandbox.FaultResetBefore: 1}})
	for _, path := range []string{sandbox.PathJWKS, sandbox.PathHealth, sandbox.PathInspectKeys, sandbox.PathInspectFaults} {
		if r := h.do(http.MethodGet, path, "", "", nil); r.status != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, r.status)
		}
	}
	if c := h.inspect.Faults(t); c.Requests != 0 {
		t.Errorf("fault counts = %+v: only partner requests count", c)
	}
}

// TestFaultPathsLimitTheFaults: with FaultPaths, only those partner paths
// get faults (and draws): an assignment succeeds while every secure/file
// request would fail.
func TestFaultPathsLimitTheFaults(t *testing.T) {
	h := start(t, sandbox.Config{Faults: map[string]float64{sandbox.Fault503: 1}, FaultPaths: []string{sandbox.PathSecureFile}})
	if status, _, err := h.tryAssign("spared-user"); err != nil || status != http.StatusOK {
		t.Fatalf("assign-key with faults on secure/file only = %d, %v; want 200", status, err)
	}
	if c := h.inspect.Faults(t); c.Requests != 0 || c.Injected[sandbox.Fault503] != 0 {
		t.Errorf("fault counts = %+v: an assignment outside FaultPaths drew a fault", c)
	}
}

// TestFaultSeedRepeats: the same seed draws the same faults, so a failing
// reliability run can be replayed.
func TestFaultSeedRepeats(t *testing.T) {
	mix := map[string]float64{sandbox.Fault503: 0.3, sandbox.Fault429: 0.2, sandbox.FaultSlow: 0.2}
	outcomes := func() []int {
		h := start(t, sandbox.Config{Faults: mix, FaultSeed: 42, FaultDelay: time.Millisecond})
		var out []int
		for i := range 20 {
			status, _, err := h.tryAssign("user-" + strings.Repeat("x", i+1))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, status)
		}
		return out
	}
	first, second := outcomes(), outcomes()
	if !slices.Equal(first, second) {
		t.Errorf("seed 42 drew %v, then %v", first, second)
	}
	distinct := map[int]bool{}
	for _, s := range first {
		distinct[s] = true
	}
	if len(distinct) < 2 {
		t.Errorf("20 draws of a 70%% fault mix all answered %v", first)
	}
}

// TestLatencyDelaysButAnswers: with a WAN latency set, partner requests
// still succeed (the figure itself is measured by benchmarks, not here).
func TestLatencyDelaysButAnswers(t *testing.T) {
	h := start(t, sandbox.Config{Latency: 5 * time.Millisecond})
	if status, _, err := h.tryAssign("alice"); err != nil || status != http.StatusOK {
		t.Fatalf("assign with latency = %d, %v", status, err)
	}
}

func TestParseFaults(t *testing.T) {
	got, err := sandbox.ParseFaults("503=0.1, reset-after=0.05,429=0")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[sandbox.Fault503] != 0.1 || got[sandbox.FaultResetAfter] != 0.05 {
		t.Errorf("ParseFaults = %v", got)
	}
	if got, err := sandbox.ParseFaults(""); err != nil || len(got) != 0 {
		t.Errorf(`ParseFaults("") = %v, %v; want none`, got, err)
	}
	for spec, want := range map[string]string{
		"504=0.1":           `unknown fault kind "504"`,
		"503":               "want KIND=PROBABILITY",
		"503=often":         "is not a number",
		"503=1.5":           "outside [0, 1]",
		"503=0.6,500=0.6":   "more than 1",
		"503=0.1,503=0.2":   "given twice",
		"slow=-0.1":         "outside [0, 1]",
		"reset-before=0.1,": "want KIND=PROBABILITY",
	} {
		if _, err := sandbox.ParseFaults(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFaults(%q) = %v, want an error containing %q", spec, err, want)
		}
	}
	if _, err := sandbox.New(sandbox.Config{Faults: map[string]float64{"flaky": 0.5}}); err == nil {
		t.Error("New accepted an unknown fault kind")
	}
}
