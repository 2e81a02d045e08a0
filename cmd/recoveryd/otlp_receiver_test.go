package main

import (
	"context"
	"encoding/hex"
	"net"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// otlpSpan is one span as an OTLP collector received it.
type otlpSpan struct {
	service  string // the resource's service.name
	name     string
	kind     tracepb.Span_SpanKind
	traceID  string // hex
	spanID   string
	parentID string
}

// otlpReceiver is a real OTLP/gRPC trace collector endpoint (the collector's
// wire protocol) on a loopback port: the same pattern as the telemetry
// package's test receiver, kept to what these tests read.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer

	mu       sync.Mutex
	requests []*collectortrace.ExportTraceServiceRequest
}

// Export implements collectortrace.TraceServiceServer.
func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, proto.Clone(req).(*collectortrace.ExportTraceServiceRequest))
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// spans flattens every span received so far.
func (r *otlpReceiver) spans() []otlpSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []otlpSpan
	for _, req := range r.requests {
		for _, rs := range req.GetResourceSpans() {
			var service string
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					out = append(out, otlpSpan{
						service:  service,
						name:     sp.GetName(),
						kind:     sp.GetKind(),
						traceID:  hex.EncodeToString(sp.GetTraceId()),
						spanID:   hex.EncodeToString(sp.GetSpanId()),
						parentID: hex.EncodeToString(sp.GetParentSpanId()),
					})
				}
			}
		}
	}
	return out
}

// startOTLPReceiver serves a receiver on 127.0.0.1 and returns it with its
// endpoint as an OTLP URL; it stops at cleanup.
func startOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &otlpReceiver{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, rcv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns when stopped
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return rcv, "http://" + ln.Addr().String()
}
