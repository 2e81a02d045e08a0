package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// loseFirstAnswer lets the emulator process the first request to path in
// full, then drops the connection before its answer: the store happened,
// the client cannot know.
func loseFirstAnswer(path string) func(http.Handler) http.Handler {
	var lost atomic.Bool
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path || lost.Swap(true) {
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(httptest.NewRecorder(), r)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(http.ErrAbortHandler)
			}
			_ = conn.Close()
		})
	}
}

// TestSecureDataRetriesALostAnswer: a secure/data store whose answer was
// lost is retried, the call succeeds, and the possible extra copy upstream
// is counted (an extra copy is acceptable; a lost acknowledged backup is
// not).
func TestSecureDataRetriesALostAnswer(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	sb := sandboxtest.Start(t, sandboxtest.Options{Wrap: loseFirstAnswer(sandbox.PathSecureData)})
	emu := &emulator{srv: sb.Server, http: sb.HTTP}
	c := emu.client(t, sandbox.DevPartnerToken, func(cfg *Config) { cfg.MeterProvider = mp })
	c.wait = func(context.Context, time.Duration) error { return nil }

	key := assignTestKey(t, c, "lost-answer")
	ct, sum := sealed(t, key.PublicKey, []byte("share"))
	resp, err := c.SecureData(t.Context(), SecureDataRequest{PublicKey: key.PublicKey, Ciphertext: ct, Checksum: sum})
	if err != nil {
		t.Fatalf("SecureData after a lost answer: %v", err)
	}
	stored := sb.Inspect.Backups(t)
	if len(stored) != 2 || (stored[0].BackupID != resp.BackupID && stored[1].BackupID != resp.BackupID) {
		t.Fatalf("upstream holds %+v, want the lost copy and %s", stored, resp.BackupID)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range sum.DataPoints {
					got[m.Name] += dp.Value
				}
			}
		}
	}
	if got[metricRetries] != 1 || got[metricDuplicates] != 1 {
		t.Errorf("retries = %d, possible duplicates = %d; want 1 and 1", got[metricRetries], got[metricDuplicates])
	}
}

// TestAssignKeyLostAnswerIs409AfterAmbiguousAttempt: an assignment whose
// answer was lost is retried; the upstream refuses the repeat with 409, and
// the error says an earlier attempt of this call may have acted, so the
// service can tell its own lost key from one assigned elsewhere. The
// upstream holds exactly one key for the pair.
func TestAssignKeyLostAnswerIs409AfterAmbiguousAttempt(t *testing.T) {
	sb := sandboxtest.Start(t, sandboxtest.Options{Wrap: loseFirstAnswer(sandbox.PathAssignKey)})
	emu := &emulator{srv: sb.Server, http: sb.HTTP}
	c := emu.client(t, sandbox.DevPartnerToken)
	c.wait = func(context.Context, time.Duration) error { return nil }

	_, err := c.AssignKey(t.Context(), validAssign())
	var uerr *Error
	if !errors.As(err, &uerr) || uerr.Kind != KindAlreadyAssigned || !uerr.AfterAmbiguousAttempt || uerr.NothingDone() {
		t.Fatalf("AssignKey after a lost answer: %v; want a 409 marked AfterAmbiguousAttempt, not NothingDone", err)
	}
	if keys := sb.Inspect.Keys(t); len(keys) != 1 {
		t.Fatalf("upstream holds %d keys, want 1", len(keys))
	}

	// A 409 with no ambiguous attempt of this call behind it is not marked.
	_, err = c.AssignKey(t.Context(), validAssign())
	if !errors.As(err, &uerr) || uerr.Kind != KindAlreadyAssigned || uerr.AfterAmbiguousAttempt {
		t.Fatalf("second AssignKey: %v; want a plain 409", err)
	}
}

// TestAssignKey503ThenKey: a 503 (which assigned nothing in the emulator)
// is retried and the retry's key returned; no extra copy is counted,
// because a repeated assignment can only meet its 409.
func TestAssignKey503ThenKey(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	var failed atomic.Bool
	fail503 := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == sandbox.PathAssignKey && !failed.Swap(true) {
				http.Error(w, `{"error":"service_unavailable","message":"injected"}`, http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	sb := sandboxtest.Start(t, sandboxtest.Options{Wrap: fail503})
	emu := &emulator{srv: sb.Server, http: sb.HTTP}
	c := emu.client(t, sandbox.DevPartnerToken, func(cfg *Config) { cfg.MeterProvider = mp })
	c.wait = func(context.Context, time.Duration) error { return nil }

	resp := assignTestKey(t, c, "after-503")
	if keys := sb.Inspect.Keys(t); len(keys) != 1 || keys[0].KeyID != resp.KeyID {
		t.Fatalf("upstream holds %+v, want only %s", keys, resp.KeyID)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range sum.DataPoints {
					got[m.Name] += dp.Value
				}
			}
		}
	}
	if got[metricRetries] != 1 || got[metricDuplicates] != 0 {
		t.Errorf("retries = %d, possible duplicates = %d; want 1 and 0", got[metricRetries], got[metricDuplicates])
	}
}

// TestBreakerFailsFast: after breakerTripFailures failed attempts in a
// row the breaker opens, and the next call fails at once without reaching
// the upstream, saying when to retry; 4xx answers never open it.
func TestBreakerFailsFast(t *testing.T) {
	var hits atomic.Int32
	var status atomic.Int32
	status.Store(http.StatusServiceUnavailable)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(srv.Close)

	t.Run("refusals do not trip it", func(t *testing.T) {
		status.Store(http.StatusBadRequest)
		c := newTestClient(t, srv.URL)
		for range 2 * breakerTripFailures {
			if _, err := c.AssignKey(t.Context(), validAssign()); !errors.Is(err, ErrInvalid) {
				t.Fatalf("AssignKey = %v, want the 400", err)
			}
		}
	})
	t.Run("failures trip it", func(t *testing.T) {
		status.Store(http.StatusServiceUnavailable)
		hits.Store(0)
		c := newTestClient(t, srv.URL)
		c.wait = func(context.Context, time.Duration) error { return nil }
		for range breakerTripFailures {
			if _, err := c.AssignKey(t.Context(), validAssign()); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("AssignKey = %v, want the 503", err)
			}
		}
		before := hits.Load()
		_, err := c.AssignKey(t.Context(), validAssign())
		var uerr *Error
		if !errors.As(err, &uerr) || uerr.Kind != KindUnavailable || !uerr.NothingDone() || uerr.RetryAfter != breakerOpenFor {
			t.Fatalf("AssignKey with the breaker open = %#v, want unavailable, nothing done, retry after %s", err, breakerOpenFor)
		}
		if hits.Load() != before {
			t.Errorf("the open breaker let %d requests through", hits.Load()-before)
		}
	})
}

// cutFirstAnswer lets the emulator process the first request to path in
// full, then sends its status and headers but only half of its body and
// closes the connection: the upstream acted, the answer was lost midway.
func cutFirstAnswer(path string) func(http.Handler) http.Handler {
	var cut atomic.Bool
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path || cut.Swap(true) {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body[:len(body)/2])
			rc := http.NewResponseController(w)
			_ = rc.Flush()
			conn, _, err := rc.Hijack()
			if err != nil {
				panic(http.ErrAbortHandler)
			}
			_ = conn.Close()
		})
	}
}

// TestCutAnswersAreRetried: a 2xx whose body is cut off (the upstream
// acted, the answer was lost) is retried as any ambiguous failure: a
// secure/data store succeeds on the retry, with the possible extra copy
// counted; an assignment's retry meets the 409 that says our own attempt
// assigned the key.
func TestCutAnswersAreRetried(t *testing.T) {
	t.Run("SecureData", func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		sb := sandboxtest.Start(t, sandboxtest.Options{Wrap: cutFirstAnswer(sandbox.PathSecureData)})
		emu := &emulator{srv: sb.Server, http: sb.HTTP}
		c := emu.client(t, sandbox.DevPartnerToken, func(cfg *Config) { cfg.MeterProvider = mp })
		c.wait = func(context.Context, time.Duration) error { return nil }

		key := assignTestKey(t, c, "cut-answer")
		ct, sum := sealed(t, key.PublicKey, []byte("share"))
		resp, err := c.SecureData(t.Context(), SecureDataRequest{PublicKey: key.PublicKey, Ciphertext: ct, Checksum: sum})
		if err != nil {
			t.Fatalf("SecureData after a cut answer: %v; want it retried", err)
		}
		stored := sb.Inspect.Backups(t)
		if len(stored) != 2 || (stored[0].BackupID != resp.BackupID && stored[1].BackupID != resp.BackupID) {
			t.Fatalf("upstream holds %+v, want the cut copy and %s", stored, resp.BackupID)
		}
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(t.Context(), &rm); err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
					for _, dp := range sum.DataPoints {
						got[m.Name] += dp.Value
					}
				}
			}
		}
		if got[metricRetries] != 1 || got[metricDuplicates] != 1 {
			t.Errorf("retries = %d, possible duplicates = %d; want 1 and 1", got[metricRetries], got[metricDuplicates])
		}
	})
	t.Run("AssignKey", func(t *testing.T) {
		sb := sandboxtest.Start(t, sandboxtest.Options{Wrap: cutFirstAnswer(sandbox.PathAssignKey)})
		emu := &emulator{srv: sb.Server, http: sb.HTTP}
		c := emu.client(t, sandbox.DevPartnerToken)
		c.wait = func(context.Context, time.Duration) error { return nil }

		_, err := c.AssignKey(t.Context(), validAssign())
		var uerr *Error
		if !errors.As(err, &uerr) || uerr.Kind != KindAlreadyAssigned || !uerr.AfterAmbiguousAttempt {
			t.Fatalf("AssignKey after a cut answer: %v; want it retried into a 409 marked AfterAmbiguousAttempt", err)
		}
		if keys := sb.Inspect.Keys(t); len(keys) != 1 {
			t.Fatalf("upstream holds %d keys, want 1", len(keys))
		}
	})
}

// TestBreakerRidesOutABurst: a burst of six failed attempts in a row (two
// calls, each retried twice), which a 30% rate of random faults produces
// every few hundred attempts, does not open the breaker: the next call
// reaches the upstream.
func TestBreakerRidesOutABurst(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if hits.Add(1) <= 6 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusBadRequest) // an answer: the upstream is back
	}))
	t.Cleanup(srv.Close)
	c := newTestClient(t, srv.URL)
	c.wait = func(context.Context, time.Duration) error { return nil }
	for range 2 {
		if _, err := c.AssignKey(t.Context(), validAssign()); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("AssignKey = %v, want the 503", err)
		}
	}
	if hits.Load() != 6 {
		t.Fatalf("%d attempts, want 6 (two calls of three attempts)", hits.Load())
	}
	if _, err := c.AssignKey(t.Context(), validAssign()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("AssignKey after a burst of six failures = %v; want it sent (the 400), not refused by an open breaker", err)
	}
}
