package telemetry

import (
	"context"
	"net"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

func TestObserveRPCLeavesOutHealthAndReflection(t *testing.T) {
	tests := []struct {
		method string
		want   bool
	}{
		{"/recovery.v1.RecoveryService/AssignKey", true},
		{"/recovery.v1.RecoveryService/SecureFile", true},
		{"/grpc.health.v1.Health/Check", false},
		{"/grpc.health.v1.Health/Watch", false},
		{"/grpc.health.v1.Health/List", false},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", false},
		{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", false},
		{"/grpc.healthcheck.Custom/Check", true}, // only the standard service is left out
	}
	for _, tt := range tests {
		if got := observeRPC(&stats.RPCTagInfo{FullMethodName: tt.method}); got != tt.want {
			t.Errorf("observeRPC(%s) = %v, want %v", tt.method, got, tt.want)
		}
	}
}

// TestGRPCServerStatsHandler runs a real gRPC server with the handler and
// checks the three things recoveryd relies on: the server span continues the
// caller's traceparent, it and the duration metric carry method and code, and
// health and reflection produce neither.
func TestGRPCServerStatsHandler(t *testing.T) {
	isolateOTELEnv(t)
	mem := tracetest.NewInMemoryExporter()
	tel := setupForTest(t, Options{SpanExporter: mem})

	const (
		method   = "recovery.v1.RecoveryService/GetKey"
		metric   = "rpc_server_call_duration_seconds"
		callerID = "4bf92f3577b34da6a3ce929d0e0e4736"
		parentID = "00f067aa0ba902b7"
	)
	series := map[string]string{"rpc_method": method, "rpc_response_status_code": "UNIMPLEMENTED"}
	countBefore := uint64(0)
	if m := findMetric(scrape(t, tel.AdminHandler(nil)), metric, series); m != nil {
		countBefore = m.GetHistogram().GetSampleCount()
	}

	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.StatsHandler(GRPCServerStatsHandler()))
	recoveryv1.RegisterRecoveryServiceServer(srv, recoveryv1.UnimplementedRecoveryServiceServer{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	reflection.Register(srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln) // returns at GracefulStop
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			// NOTE: GracefulStop waits for the handlers, and the stats
			// handler ends the span and records the metric in them, so
			// after it everything below has been recorded.
			srv.GracefulStop()
			<-served
		}
	}
	t.Cleanup(stop)

	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(),
		"traceparent", "00-"+callerID+"-"+parentID+"-01",
		"baggage", "caller=billing")

	_, err = recoveryv1.NewRecoveryServiceClient(conn).GetKey(ctx, &recoveryv1.GetKeyRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("GetKey: %v, want Unimplemented", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health Check: %v", err)
	}
	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := refl.Recv(); err != nil {
		t.Fatalf("reflection ListServices: %v", err)
	}
	if err := refl.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	stop()

	spans := mem.GetSpans()
	if len(spans) != 1 {
		var names []string
		for _, s := range spans {
			names = append(names, s.Name)
		}
		t.Fatalf("got spans %v, want only %s (health and reflection left out)", names, method)
	}
	sp := spans[0]
	if sp.Name != method || sp.SpanKind != trace.SpanKindServer {
		t.Errorf("span %q kind %v, want %q server", sp.Name, sp.SpanKind, method)
	}
	if sp.SpanContext.TraceID().String() != callerID || sp.Parent.SpanID().String() != parentID || !sp.Parent.IsRemote() {
		t.Errorf("span trace %s parent %s (remote %v), want the caller's %s / %s",
			sp.SpanContext.TraceID(), sp.Parent.SpanID(), sp.Parent.IsRemote(), callerID, parentID)
	}
	attrs := map[string]string{}
	for _, kv := range sp.Attributes {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs["rpc.method"] != method || attrs["rpc.response.status_code"] != "UNIMPLEMENTED" {
		t.Errorf("span attributes %v, want rpc.method and rpc.response.status_code", attrs)
	}

	families := scrape(t, tel.AdminHandler(nil))
	m := findMetric(families, metric, series)
	if m == nil {
		t.Fatalf("%s%v missing from /metrics", metric, series)
	}
	if got := m.GetHistogram().GetSampleCount() - countBefore; got != 1 {
		t.Errorf("%s%v count grew by %d, want 1", metric, series, got)
	}
	for _, s := range families[metric].GetMetric() {
		for _, lp := range s.GetLabel() {
			if lp.GetName() == "rpc_method" && strings.HasPrefix(lp.GetValue(), "grpc.") {
				t.Errorf("%s has a series for %s; health and reflection must not be measured", metric, lp.GetValue())
			}
		}
	}
}
