package app

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"

	"github.com/walletprovider/recoveryservice/cmd/internal/telemetry/otlptest"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// The caller's side of the traces in these tests: a trace id and the span id
// of the caller's own client span, sent as W3C traceparent metadata.
const (
	callerSpanID    = "00f067aa0ba902b7"
	assignTraceID   = "4bf92f3577b34da6a3ce929d0e0e4736"
	fileTraceID     = "5c0a3f4688c45eb7b4df03a1f1f15847"
	exportedTraceID = "6d1b4057990656c8c5e014b202026958"
)

// tracedCtx is a test context that sends walletAPI's token and traceparent
// for traceID (sampled) as gRPC metadata, as an instrumented caller does.
func tracedCtx(t *testing.T, traceID string) context.Context {
	t.Helper()
	return metadata.AppendToOutgoingContext(withToken(testCtx(t), walletAPI.token), "traceparent", "00-"+traceID+"-"+callerSpanID+"-01")
}

// authenticatedConfig is remoteConfig with caller authentication knowing
// walletAPI.
func authenticatedConfig(t *testing.T, u *sandboxtest.Sandbox) Config {
	t.Helper()
	cfg := remoteConfig(t, u, t.TempDir())
	cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI)
	return cfg
}

// traceparentRecorder keeps the traceparent header of every request the
// upstream receives, by path.
type traceparentRecorder struct {
	mu     sync.Mutex
	byPath map[string][]string
}

// wrap is a startUpstream wrapper.
func (r *traceparentRecorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		if r.byPath == nil {
			r.byPath = map[string][]string{}
		}
		r.byPath[req.URL.Path] = append(r.byPath[req.URL.Path], req.Header.Get("traceparent"))
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	})
}

// received is every traceparent sent to path.
func (r *traceparentRecorder) received(path string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.byPath[path]...)
}

// spanSet is the ended spans of one trace.
type spanSet []sdktrace.ReadOnlySpan

// inTrace keeps the spans of traceID.
func inTrace(spans []sdktrace.ReadOnlySpan, traceID string) spanSet {
	var out spanSet
	for _, s := range spans {
		if s.SpanContext().TraceID().String() == traceID {
			out = append(out, s)
		}
	}
	return out
}

// find returns the spans of kind whose name matches.
func (ss spanSet) find(kind trace.SpanKind, match func(name string) bool) spanSet {
	var out spanSet
	for _, s := range ss {
		if s.SpanKind() == kind && match(s.Name()) {
			out = append(out, s)
		}
	}
	return out
}

// one fails unless exactly one span matched, and returns it.
func (ss spanSet) one(t *testing.T, what string) sdktrace.ReadOnlySpan {
	t.Helper()
	if len(ss) != 1 {
		t.Fatalf("%d spans for %s, want 1", len(ss), what)
	}
	return ss[0]
}

// descendsFrom reports whether s has ancestor among the set's spans.
func (ss spanSet) descendsFrom(s sdktrace.ReadOnlySpan, ancestor trace.SpanID) bool {
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, x := range ss {
		byID[x.SpanContext().SpanID()] = x
	}
	for parent := s.Parent().SpanID(); parent.IsValid(); {
		if parent == ancestor {
			return true
		}
		p, ok := byID[parent]
		if !ok {
			return false
		}
		parent = p.Parent().SpanID()
	}
	return false
}

func named(name string) func(string) bool { return func(n string) bool { return n == name } }

// TestOneTraceFromCallerToUpstream: a call carrying traceparent is served in
// that trace, with the registry, the signature check and the upstream HTTP
// call as child spans, and the upstream receives the same trace id with the
// HTTP client span as parent; the call's log line names the trace, the span
// and the caller.
func TestOneTraceFromCallerToUpstream(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	log, logs := newTestLogger(t)
	headers := &traceparentRecorder{}
	up := startUpstream(t, t.TempDir(), log, headers.wrap)
	srv := startReady(t, authenticatedConfig(t, up), log, Options{SpanProcessor: recorder})

	key := assignKey(t, tracedCtx(t, assignTraceID), srv.client, "user-traced")
	stored, err := sendFile(tracedCtx(t, fileTraceID), srv.client, fileHeader(key.GetKeyId()), []byte("traced file bytes"))
	if err != nil {
		t.Fatalf("SecureFile: %v", err)
	}
	// Stopping both servers ends every span (a server span ends after its
	// response is sent, so only then is the record complete).
	if err := srv.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	up.HTTP.Close()
	ended := recorder.Ended()

	for _, tc := range []struct {
		name, traceID, method, upstreamPath string
	}{
		{"AssignKey", assignTraceID, "AssignKey", sandbox.PathAssignKey},
		{"SecureFile", fileTraceID, "SecureFile", sandbox.PathSecureFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spans := inTrace(ended, tc.traceID)
			server := spans.find(trace.SpanKindServer, named("recovery.v1.RecoveryService/"+tc.method)).one(t, "the gRPC server span")
			if p := server.Parent(); p.SpanID().String() != callerSpanID || !p.IsRemote() {
				t.Errorf("server span's parent = %s (remote %v), want the caller's %s", p.SpanID(), p.IsRemote(), callerSpanID)
			}
			serverID := server.SpanContext().SpanID()

			registry := spans.find(trace.SpanKindClient, func(n string) bool { return strings.HasPrefix(n, "registry.") })
			if len(registry) == 0 {
				t.Error("no registry span in the trace")
			}
			for _, s := range registry {
				if !spans.descendsFrom(s, serverID) {
					t.Errorf("registry span %s is not under the server span", s.Name())
				}
			}

			client := spans.find(trace.SpanKindClient, named(http.MethodPost+" "+tc.upstreamPath)).one(t, "the upstream HTTP client span")
			if !spans.descendsFrom(client, serverID) {
				t.Errorf("HTTP client span is not under the server span")
			}
			upstreamSide := spans.find(trace.SpanKindServer, func(n string) bool { return strings.HasPrefix(n, "sandbox ") }).one(t, "the upstream's server span")
			if upstreamSide.Parent().SpanID() != client.SpanContext().SpanID() {
				t.Errorf("upstream server span's parent = %s, want the HTTP client span %s", upstreamSide.Parent().SpanID(), client.SpanContext().SpanID())
			}
			want := "00-" + tc.traceID + "-" + client.SpanContext().SpanID().String() + "-01"
			if got := headers.received(tc.upstreamPath); len(got) != 1 || got[0] != want {
				t.Errorf("upstream received traceparent %q, want [%s]", got, want)
			}

			var line map[string]any
			for _, l := range finishedCalls(t, logs.String()) {
				if l["grpc.method"] == tc.method {
					line = l
				}
			}
			if line["trace_id"] != tc.traceID || line["span_id"] != serverID.String() {
				t.Errorf("%s finish line has trace %v span %v, want %s %s", tc.method, line["trace_id"], line["span_id"], tc.traceID, serverID)
			}
			if line[fieldKeyID] != key.GetKeyId() || line[fieldCaller] != walletAPI.name {
				t.Errorf("%s finish line key_id = %v, caller = %v, want %s, %s", tc.method, line[fieldKeyID], line[fieldCaller], key.GetKeyId(), walletAPI.name)
			}
		})
	}

	verify := inTrace(ended, assignTraceID).find(trace.SpanKindInternal, named("service.verify_signature"))
	if len(verify) != 1 {
		t.Errorf("%d signature verification spans in the AssignKey trace, want 1", len(verify))
	}
	if got := finishedCalls(t, logs.String()); got[len(got)-1][fieldBackupID] != stored.GetBackup().GetBackupId() {
		t.Errorf("SecureFile finish line backup_id = %v, want %s", got[len(got)-1][fieldBackupID], stored.GetBackup().GetBackupId())
	}
	// Health checks (waitServing watched health) are not traced.
	for _, s := range ended {
		if strings.HasPrefix(s.Name(), "grpc.health.v1.Health/") {
			t.Errorf("health call traced: %s", s.Name())
		}
	}
}

// TestSpansExportedOverOTLP: with only the standard OTEL_* variables set,
// recoveryd exports a call's spans over the network to an OTLP/gRPC
// collector, flushed when it stops.
func TestSpansExportedOverOTLP(t *testing.T) {
	receiver, endpoint := otlptest.StartGRPC(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	srv := startReady(t, authenticatedConfig(t, up), log, Options{})

	assignKey(t, tracedCtx(t, exportedTraceID), srv.client, "user-exported")
	if err := srv.stop(); err != nil { // flushes the batch
		t.Fatalf("run: %v", err)
	}

	var server, client, registry int
	for _, s := range receiver.Spans() {
		if s.TraceID != exportedTraceID {
			continue
		}
		if s.ServiceName != telemetryServiceName {
			t.Errorf("span %s exported with service.name %q, want %q", s.Name, s.ServiceName, telemetryServiceName)
		}
		switch {
		case s.Kind == tracepb.Span_SPAN_KIND_SERVER && s.Name == "recovery.v1.RecoveryService/AssignKey":
			server++
			if s.ParentID != callerSpanID {
				t.Errorf("exported server span's parent = %s, want %s", s.ParentID, callerSpanID)
			}
		case s.Kind == tracepb.Span_SPAN_KIND_CLIENT && s.Name == http.MethodPost+" "+sandbox.PathAssignKey:
			client++
		case s.Kind == tracepb.Span_SPAN_KIND_CLIENT && strings.HasPrefix(s.Name, "registry."):
			registry++
		}
	}
	if server != 1 || client != 1 || registry == 0 {
		t.Errorf("collector received %d server, %d upstream client and %d registry spans of the call, want 1, 1, >0; all: %+v",
			server, client, registry, receiver.Spans())
	}
}

// TestUpstreamGetsNoBaggage: a call carrying W3C traceparent and baggage
// reaches the upstream (a third party) with the trace, never the baggage,
// the caller's internal context.
func TestUpstreamGetsNoBaggage(t *testing.T) {
	log, _ := newTestLogger(t)
	var (
		mu   sync.Mutex
		seen []http.Header
	)
	up := startUpstream(t, t.TempDir(), log, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == sandbox.PathAssignKey {
				mu.Lock()
				seen = append(seen, req.Header.Clone())
				mu.Unlock()
			}
			h.ServeHTTP(w, req)
		})
	})
	srv := startReady(t, authenticatedConfig(t, up), log, Options{})

	const internal = "tenant.tier=gold,employee.email=ops%40wallet.example"
	ctx := metadata.AppendToOutgoingContext(tracedCtx(t, assignTraceID), "baggage", internal)
	assignKey(t, ctx, srv.client, "user-with-baggage")

	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("upstream saw %d AssignKey requests, want 1", len(seen))
	}
	if tp := seen[0].Get("traceparent"); !strings.HasPrefix(tp, "00-"+assignTraceID+"-") {
		t.Errorf("upstream traceparent = %q, want the caller's trace %s", tp, assignTraceID)
	}
	if b := seen[0].Values("baggage"); len(b) != 0 {
		t.Errorf("upstream received baggage %q: the caller's internal context must not reach a third party", b)
	}
}
