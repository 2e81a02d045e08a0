// Package otlptest runs real OpenTelemetry trace collector endpoints (the
// collector's OTLP wire protocol, over gRPC or HTTP/protobuf) on loopback,
// so tests can check what a process exports over the network. Test support
// only: production code never imports it.
package otlptest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is one span as a collector received it; ids are lowercase hex.
type Span struct {
	ServiceName string            // the resource's service.name
	Resource    map[string]string // the resource's string attributes
	Name        string
	Kind        tracepb.Span_SpanKind
	TraceID     string
	SpanID      string
	ParentID    string            // "" for a root span
	Attrs       map[string]string // the span's string attributes
}

// Sink stores what a receiver was sent, whatever the transport.
type Sink struct {
	mu          sync.Mutex
	requests    []*collectortrace.ExportTraceServiceRequest
	badRequests []string
}

func (s *Sink) add(req *collectortrace.ExportTraceServiceRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
}

// RequestCount is how many export requests arrived.
func (s *Sink) RequestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// BadRequests lists why requests were refused (HTTP receiver only).
func (s *Sink) BadRequests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.badRequests...)
}

// Spans flattens every span received so far.
func (s *Sink) Spans() []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Span
	for _, req := range s.requests {
		for _, rs := range req.GetResourceSpans() {
			res := stringAttrs(rs.GetResource().GetAttributes())
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					out = append(out, Span{
						ServiceName: res["service.name"],
						Resource:    res,
						Name:        sp.GetName(),
						Kind:        sp.GetKind(),
						TraceID:     hex.EncodeToString(sp.GetTraceId()),
						SpanID:      hex.EncodeToString(sp.GetSpanId()),
						ParentID:    hex.EncodeToString(sp.GetParentSpanId()),
						Attrs:       stringAttrs(sp.GetAttributes()),
					})
				}
			}
		}
	}
	return out
}

func stringAttrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return m
}

// GRPCReceiver is an OTLP/gRPC trace collector endpoint.
type GRPCReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	Sink
}

// Export implements collectortrace.TraceServiceServer.
func (r *GRPCReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.add(proto.Clone(req).(*collectortrace.ExportTraceServiceRequest))
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// StartGRPC serves a GRPCReceiver on 127.0.0.1 until the test ends and
// returns it with its endpoint as an OTLP URL.
func StartGRPC(t testing.TB) (*GRPCReceiver, string) {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &GRPCReceiver{}
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

// HTTPReceiver is an OTLP/HTTP (protobuf) trace collector endpoint.
type HTTPReceiver struct {
	Sink
}

func (r *HTTPReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	fail := func(code int, why string) {
		r.mu.Lock()
		r.badRequests = append(r.badRequests, why)
		r.mu.Unlock()
		http.Error(w, why, code)
	}
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		fail(http.StatusNotFound, req.Method+" "+req.URL.Path)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		fail(http.StatusUnsupportedMediaType, "content type "+ct)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		defer gz.Close()
		body = gz
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	msg := &collectortrace.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(raw, msg); err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	r.add(msg)
	out, err := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	if err != nil {
		fail(http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = io.Copy(w, bytes.NewReader(out))
}

// StartHTTP serves an HTTPReceiver with httptest on loopback until the test
// ends and returns it with its base URL.
func StartHTTP(t testing.TB) (*HTTPReceiver, string) {
	t.Helper()
	rcv := &HTTPReceiver{}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	return rcv, srv.URL
}
