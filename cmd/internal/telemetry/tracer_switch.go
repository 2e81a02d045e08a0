package telemetry

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"
)

// switchingTracerProvider is the process's global TracerProvider. The OTel
// global delegates only once: tracers that packages captured before the first
// otel.SetTracerProvider stay bound to that first provider forever. Installing
// this switch once and pointing it at each Setup's SDK provider keeps every
// tracer, however early it was captured, exporting to the current one.
type switchingTracerProvider struct {
	embedded.TracerProvider

	current atomic.Pointer[tracerProviderHolder] // read on every span start
	mu      sync.Mutex                           // serialises use and release
}

// tracerProviderHolder lets an interface value live in an atomic.Pointer.
type tracerProviderHolder struct{ tp trace.TracerProvider }

// globalTracerSwitch is installed as the global TracerProvider by the first
// Setup and never replaced.
var (
	globalTracerSwitch     = newSwitchingTracerProvider()
	installTracerSwitchOne sync.Once
)

func newSwitchingTracerProvider() *switchingTracerProvider {
	p := &switchingTracerProvider{}
	p.current.Store(&tracerProviderHolder{tp: noop.NewTracerProvider()})
	return p
}

// install makes the switch the global TracerProvider (once per process).
func (p *switchingTracerProvider) install() {
	installTracerSwitchOne.Do(func() { otel.SetTracerProvider(p) })
}

// use points every tracer handed out by the switch at tp.
func (p *switchingTracerProvider) use(tp trace.TracerProvider) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current.Store(&tracerProviderHolder{tp: tp})
}

// release points the switch back to a no-op provider, but only if tp is still
// the one in use, so shutting down an older Telemetry does not disable a newer.
func (p *switchingTracerProvider) release(tp trace.TracerProvider) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current.Load().tp == tp {
		p.current.Store(&tracerProviderHolder{tp: noop.NewTracerProvider()})
	}
}

// Tracer implements trace.TracerProvider.
func (p *switchingTracerProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return &switchingTracer{provider: p, name: name, opts: opts}
}

// switchingTracer resolves the current provider's tracer at every Start.
type switchingTracer struct {
	embedded.Tracer

	provider *switchingTracerProvider
	name     string
	opts     []trace.TracerOption
}

// Start implements trace.Tracer.
func (t *switchingTracer) Start(ctx context.Context, spanName string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	tp := t.provider.current.Load().tp
	return tp.Tracer(t.name, t.opts...).Start(ctx, spanName, opts...) //nolint:spancheck // a Tracer: its caller ends the span
}
