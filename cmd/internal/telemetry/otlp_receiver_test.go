package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// receivedSpan is one span as an OTLP collector received it.
type receivedSpan struct {
	serviceName string
	resource    map[string]string
	name        string
	traceID     []byte
	spanID      []byte
	attrs       map[string]string
}

// traceSink stores what a receiver was sent, whatever the transport.
type traceSink struct {
	mu       sync.Mutex
	requests []*collectortrace.ExportTraceServiceRequest
}

func (s *traceSink) add(req *collectortrace.ExportTraceServiceRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
}

func (s *traceSink) requestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func (s *traceSink) spans() []receivedSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []receivedSpan
	for _, req := range s.requests {
		for _, rs := range req.GetResourceSpans() {
			res := stringAttrs(rs.GetResource().GetAttributes())
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					out = append(out, receivedSpan{
						serviceName: res["service.name"],
						resource:    res,
						name:        sp.GetName(),
						traceID:     sp.GetTraceId(),
						spanID:      sp.GetSpanId(),
						attrs:       stringAttrs(sp.GetAttributes()),
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

// grpcTraceReceiver is a real OTLP/gRPC trace collector endpoint: the
// collector's wire protocol, served on a loopback port.
type grpcTraceReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	traceSink
}

// Export implements collectortrace.TraceServiceServer.
func (r *grpcTraceReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.add(proto.Clone(req).(*collectortrace.ExportTraceServiceRequest))
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// startGRPCTraceReceiver serves a receiver on 127.0.0.1 and returns it with
// its endpoint as an OTLP URL.
func startGRPCTraceReceiver(t *testing.T) (*grpcTraceReceiver, string) {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &grpcTraceReceiver{}
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

// httpTraceReceiver is a real OTLP/HTTP (protobuf) trace collector endpoint.
type httpTraceReceiver struct {
	traceSink
	badRequests []string
}

func (r *httpTraceReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
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

// startHTTPTraceReceiver serves a receiver with httptest on loopback.
func startHTTPTraceReceiver(t *testing.T) (*httpTraceReceiver, string) {
	t.Helper()
	rcv := &httpTraceReceiver{}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	return rcv, srv.URL
}
