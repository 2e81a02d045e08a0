package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Admin server limits. The admin port serves small, fast answers to
// scrapers and probes; the limits keep a stuck client from holding it.
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminReadTimeout       = 10 * time.Second
	adminWriteTimeout      = 30 * time.Second
	adminIdleTimeout       = 60 * time.Second
	// adminShutdownTimeout bounds how long ServeAdmin waits for in-flight
	// scrapes once its context is done.
	adminShutdownTimeout = 5 * time.Second
)

// AdminHandler serves the operator endpoints: /metrics (Prometheus text from
// the process registry), /healthz (200 while the process can answer at all,
// for liveness probes) and /readyz (200 when ready returns nil, 503 with its
// reason otherwise, for readiness probes and load balancers). A nil ready
// means always ready.
//
// NOTE: the reason ready returns is sent verbatim to whoever can reach the
// admin port, so it must be safe to print: no tokens, passwords or
// plaintext, and bounded in size.
func (t *Telemetry) AdminHandler(ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(t.meters.registry, promhttp.HandlerOpts{
		// A failing collector should not hide all the others.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
				return
			}
		}
		writeText(w, http.StatusOK, "ready")
	})
	return mux
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, body) // a probe that hung up needs no answer
}

// ServeAdmin listens on addr and serves h until ctx is done, then shuts the
// server down gracefully. It returns nil after a clean shutdown and an error
// if it cannot listen or serving fails.
func ServeAdmin(ctx context.Context, addr string, h http.Handler) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("telemetry: admin listener on %s: %w", addr, err)
	}
	return ServeAdminListener(ctx, ln, h)
}

// ServeAdminListener is ServeAdmin on a listener the caller opened, so a
// startup can fail on a busy port before it reports ready, and tests can use
// port 0. It closes ln.
func ServeAdminListener(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("telemetry: admin server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	if err != nil {
		_ = srv.Close() // the graceful path failed; drop what is left
		return fmt.Errorf("telemetry: stopping the admin server on %s: %w", ln.Addr(), err)
	}
	return nil
}

// WithProfiling serves Go's runtime profiles (net/http/pprof: CPU, heap,
// allocations, blocking, mutexes, goroutines, execution traces) under
// /debug/pprof/ beside admin. Profiles hold code locations and sizes, never
// request data, but taking one costs CPU, so it is for a loopback admin port
// that an operator turned it on for. The command line (pprof.Cmdline) is
// left out, so Index answers it 404: a development --database-url may
// hold a password.
func WithProfiling(admin http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // the named profiles: heap, allocs, block, goroutine, …
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.Handle("/", admin)
	return mux
}
