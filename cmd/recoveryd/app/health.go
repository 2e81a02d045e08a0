package app

import (
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthService is grpc-go's health server with one addition: at shutdown,
// Watch streams end once they have delivered NOT_SERVING. A watch never ends
// on its own, so without this every watching client (a load balancer doing
// client-side health checks, say) would hold GracefulStop until the
// shutdown deadline.
type healthService struct {
	*health.Server
	draining  chan struct{}
	drainOnce sync.Once
	// notReady is why the server is not SERVING, for /readyz: the failing
	// readiness check and its error, made safe to print (safeReason).
	notReady atomic.Pointer[string]
}

// Reasons /readyz gives before the first check round ends and at shutdown,
// when no check has failed.
const (
	reasonStarting = "starting: the readiness checks have not finished a round yet"
	reasonDraining = "shutting down"
)

// newHealthService reports NOT_SERVING, overall and for the RecoveryService,
// until readiness says otherwise.
func newHealthService() *healthService {
	hs := &healthService{Server: health.NewServer(), draining: make(chan struct{})}
	hs.setNotReady(reasonStarting)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(serviceName, healthpb.HealthCheckResponse_NOT_SERVING)
	return hs
}

// markServing reports the server, and the RecoveryService, SERVING.
func (h *healthService) markServing() {
	h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	h.SetServingStatus(serviceName, healthpb.HealthCheckResponse_SERVING)
}

// markNotServing reports the server, and the RecoveryService, NOT_SERVING
// while a dependency is down; markServing undoes it.
func (h *healthService) markNotServing() {
	h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	h.SetServingStatus(serviceName, healthpb.HealthCheckResponse_NOT_SERVING)
}

// drain reports NOT_SERVING for good and ends every Watch stream once it
// has told its client so.
func (h *healthService) drain() {
	h.drainOnce.Do(func() {
		h.setNotReady(reasonDraining)
		h.Shutdown()
		close(h.draining)
	})
}

// setNotReady records why the server is not SERVING; the health status
// itself is changed by markServing, markNotServing and drain.
func (h *healthService) setNotReady(reason string) { h.notReady.Store(&reason) }

// notReadyReason is the last reason recorded by setNotReady.
func (h *healthService) notReadyReason() string { return *h.notReady.Load() }

// errDraining ends a Watch stream at shutdown; a client watches again on a
// new connection (to another replica).
var errDraining = status.Error(codes.Unavailable, "server is shutting down: watch health on a new connection")

// Watch serves the health server's Watch until the client leaves or the
// server drains.
func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ws := &watchStream{Health_WatchServer: stream, ctx: ctx, sent: make(chan struct{}, 1)}
	var drained atomic.Bool
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-h.draining:
		}
		// NOTE: drain set NOT_SERVING before closing h.draining; wait until
		// the watcher has been sent it (or anything but SERVING) so it
		// learns why the stream ends.
		for ws.stillServing() {
			select {
			case <-ws.sent:
			case <-ctx.Done():
				return
			}
		}
		drained.Store(true)
		cancel()
	}()
	err := h.Server.Watch(req, ws)
	if drained.Load() {
		return errDraining
	}
	return err
}

// watchStream is a Watch stream whose context drain can end, and which
// remembers the last status it sent.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx  context.Context
	sent chan struct{} // poked after every send

	mu     sync.Mutex
	any    bool
	status healthpb.HealthCheckResponse_ServingStatus
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(m *healthpb.HealthCheckResponse) error {
	err := w.Health_WatchServer.Send(m)
	w.mu.Lock()
	w.any, w.status = true, m.GetStatus()
	w.mu.Unlock()
	select {
	case w.sent <- struct{}{}:
	default:
	}
	return err
}

// stillServing reports whether the client may still believe SERVING: the
// last status sent was SERVING, or nothing was sent yet.
func (w *watchStream) stillServing() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.any || w.status == healthpb.HealthCheckResponse_SERVING
}
