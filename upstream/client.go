package upstream

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Upstream hosts named by the contract.
const (
	SandboxBaseURL    = "https://service.uat-keys.coincover.com"
	ProductionBaseURL = "https://service.keys.coincover.com"
	SandboxJWKSURL    = "https://policies.uat-keys.coincover.com/.well-known/jwks.json"
	ProductionJWKSURL = "https://policies.keys.coincover.com/.well-known/jwks.json"
)

// Defaults a zero Config gets.
const (
	// DefaultCallTimeout bounds AssignKey and SecureData, retries included.
	DefaultCallTimeout = 30 * time.Second
	// DefaultFileTimeout bounds a SecureFile upload.
	DefaultFileTimeout = 10 * time.Minute
	// DefaultUserAgent identifies the adapter to the upstream's operators.
	DefaultUserAgent = "recoveryservice-upstream/1 (+https://github.com/walletprovider/recoveryservice)"
)

// Bounded reads of response bodies.
const (
	// maxJSONBody bounds a 2xx JSON response.
	maxJSONBody = 1 << 20
)

// Config configures a Client.
type Config struct {
	// BaseURL of the Partner Key Service, e.g. ProductionBaseURL.
	BaseURL string
	// Token is the bearer token (read from a file by the caller; never logged).
	Token string
	// Transport for requests; nil means a default transport. The client wraps
	// it with otelhttp.
	Transport http.RoundTripper
	// CallTimeout bounds each JSON call (AssignKey, SecureData); 0 = 30s.
	CallTimeout time.Duration
	// FileTimeout bounds a SecureFile upload; 0 = 10m.
	FileTimeout time.Duration
	// AllowHTTP permits http:// base URLs (development only).
	AllowHTTP bool

	// UserAgent sent with every request; "" = DefaultUserAgent.
	UserAgent string
	// TracerProvider for the client's spans; nil = the global provider.
	TracerProvider trace.TracerProvider
	// MeterProvider for the client's metrics; nil = the global provider.
	MeterProvider metric.MeterProvider
	// Logger for retry notices; nil = slog.Default(). Nothing secret is
	// ever logged.
	Logger *slog.Logger
}

// String renders cfg for logs and flag dumps with the token redacted, so a
// Config can be printed safely.
func (c Config) String() string {
	token := ""
	if c.Token != "" {
		token = "[redacted]"
	}
	return fmt.Sprintf("upstream.Config{BaseURL:%q Token:%s CallTimeout:%s FileTimeout:%s AllowHTTP:%t}",
		c.BaseURL, token, c.CallTimeout, c.FileTimeout, c.AllowHTTP)
}

// GoString keeps %#v from printing the token.
func (c Config) GoString() string { return c.String() }

// LogValue keeps slog from printing the token.
func (c Config) LogValue() slog.Value {
	token := ""
	if c.Token != "" {
		token = "[redacted]"
	}
	return slog.GroupValue(
		slog.String("base_url", c.BaseURL),
		slog.String("token", token),
		slog.Duration("call_timeout", c.CallTimeout),
		slog.Duration("file_timeout", c.FileTimeout),
		slog.Bool("allow_http", c.AllowHTTP),
	)
}

// Validate checks cfg and says what to fix. It never echoes the token.
func (c Config) Validate() error {
	if _, err := parseServiceURL("upstream base URL", c.BaseURL, c.AllowHTTP); err != nil {
		return err
	}
	if err := validateToken(c.Token); err != nil {
		return err
	}
	if c.CallTimeout < 0 {
		return fmt.Errorf("upstream call timeout %s is negative: use 0 for the default (%s) or a positive duration", c.CallTimeout, DefaultCallTimeout)
	}
	if c.FileTimeout < 0 {
		return fmt.Errorf("upstream file timeout %s is negative: use 0 for the default (%s) or a positive duration", c.FileTimeout, DefaultFileTimeout)
	}
	if strings.ContainsFunc(c.UserAgent, unicode.IsControl) {
		return errors.New("upstream user agent contains control characters")
	}
	return nil
}

// parseServiceURL validates an upstream URL: absolute, https:// (http://
// only when allowHTTP), a host, no credentials, no query or fragment.
func parseServiceURL(what, raw string, allowHTTP bool) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%s is required (e.g. %s)", what, ProductionBaseURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a valid URL: %w", what, raw, err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowHTTP:
	case u.Scheme == "http":
		return nil, fmt.Errorf("%s %q uses http://: use https:// (plain HTTP is allowed only in development, with AllowHTTP)", what, raw)
	case u.Scheme == "":
		return nil, fmt.Errorf("%s %q is not absolute: it needs a scheme and host, e.g. %s", what, raw, ProductionBaseURL)
	default:
		return nil, fmt.Errorf("%s %q has scheme %q: only https:// is supported", what, raw, u.Scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%s must not carry credentials (user:password@): put the token in the token file", what)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%s %q has no host", what, raw)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return nil, fmt.Errorf("%s %q must not have a query string", what, raw)
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("%s %q must not have a fragment", what, raw)
	}
	return u, nil
}

// validateToken checks the bearer token's shape without ever printing it.
func validateToken(token string) error {
	if token == "" {
		return errors.New("upstream token is required: set the token file")
	}
	for _, r := range token {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return errors.New("upstream token contains whitespace or control characters: the token file must hold the token alone on one line")
		}
	}
	return nil
}

// Client speaks the Partner Key Service REST contract. It is safe for
// concurrent use.
type Client struct {
	base        *url.URL
	token       string
	userAgent   string
	http        *http.Client
	callTimeout time.Duration
	fileTimeout time.Duration
	tracer      trace.Tracer
	metrics     *clientMetrics
	log         *slog.Logger
	breaker     *gobreaker.TwoStepCircuitBreaker[struct{}]

	// abandoned ends with Abandon; every request's context ends with it
	// (track), so a shutdown can cut the upstream calls still running.
	abandoned context.Context
	abandon   context.CancelCauseFunc
	// inFlight counts the calls track is following.
	inFlight atomic.Int64

	// maxRetries and wait are the retry policy; tests shorten them.
	maxRetries int
	wait       func(ctx context.Context, d time.Duration) error
	now        func() time.Time
}

// NewClient validates cfg and builds a Client.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, _ := parseServiceURL("upstream base URL", cfg.BaseURL, cfg.AllowHTTP)
	base.Path = strings.TrimSuffix(base.Path, "/")
	base.RawPath = ""

	transport := cfg.Transport
	if transport == nil {
		transport = defaultTransport()
	}
	otelOpts := []otelhttp.Option{otelhttp.WithSpanNameFormatter(spanName), otelhttp.WithPropagators(upstreamPropagator)}
	if cfg.TracerProvider != nil {
		otelOpts = append(otelOpts, otelhttp.WithTracerProvider(cfg.TracerProvider))
	}
	if cfg.MeterProvider != nil {
		otelOpts = append(otelOpts, otelhttp.WithMeterProvider(cfg.MeterProvider))
	}
	metrics, err := newClientMetrics(cfg.MeterProvider)
	if err != nil {
		return nil, err
	}
	log := cmp.Or(cfg.Logger, slog.Default())
	abandoned, abandon := context.WithCancelCause(context.Background())
	c := &Client{
		abandoned: abandoned,
		abandon:   abandon,
		base:      base,
		token:     cfg.Token,
		userAgent: cmp.Or(cfg.UserAgent, DefaultUserAgent),
		http: &http.Client{
			Transport: otelhttp.NewTransport(transport, otelOpts...),
			// The partner API never redirects; following one could send the
			// bearer token somewhere unexpected.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		callTimeout: cmp.Or(cfg.CallTimeout, DefaultCallTimeout),
		fileTimeout: cmp.Or(cfg.FileTimeout, DefaultFileTimeout),
		tracer:      tracerFrom(cfg.TracerProvider),
		metrics:     metrics,
		log:         log,
		breaker:     newBreaker(log, metrics),
		maxRetries:  maxRetries,
		wait:        sleepCtx,
		now:         time.Now,
	}
	return c, nil
}

// upstreamPropagator is what the upstream (a third party) learns of the
// caller's context: the W3C traceparent (and tracestate), so a call can be
// followed across both, and never the W3C baggage, which carries whatever
// internal context the caller put in it. It replaces the process's global
// propagator, which keeps baggage for recoveryd's own use.
var upstreamPropagator = propagation.TraceContext{}

// MaxIdleConnsPerHost is how many idle connections to one upstream host
// the adapter's transport keeps for reuse. net/http keeps 2: under more
// concurrent calls than that, every other connection was closed after its
// call and a new one (TCP and TLS handshakes) opened for the next. 256 is
// the most calls one gRPC connection to recoveryd may have in flight;
// idle connections still close after the transport's IdleConnTimeout.
const MaxIdleConnsPerHost = 256

// defaultTransport is http.DefaultTransport's settings on a private
// instance, so tuning it never affects other clients in the process.
func defaultTransport() http.RoundTripper {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		return KeepIdleConns(t.Clone())
	}
	return http.DefaultTransport
}

// KeepIdleConns makes t keep up to MaxIdleConnsPerHost idle connections per
// host (and room for two hosts, the upstream and its JWKS, in all), and
// returns it.
func KeepIdleConns(t *http.Transport) *http.Transport {
	t.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	if t.MaxIdleConns != 0 {
		t.MaxIdleConns = max(t.MaxIdleConns, 2*MaxIdleConnsPerHost)
	}
	return t
}

// spanName names otelhttp's client spans "POST /v1/partner/keys".
func spanName(_ string, r *http.Request) string {
	return r.Method + " " + r.URL.Path
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// endpoint is one partner route.
type endpoint struct {
	method string
	path   string
}

func (e endpoint) String() string { return e.method + " " + e.path }

var (
	endpointAssignKey  = endpoint{http.MethodPost, "/v1/partner/keys"}
	endpointSecureData = endpoint{http.MethodPost, "/v1/partner/secure/data"}
	endpointSecureFile = endpoint{http.MethodPost, "/v1/partner/secure/file"}
)

func (c *Client) url(e endpoint) string {
	u := *c.base
	u.Path = c.base.Path + e.path
	return u.String()
}

// newRequest builds a request with the headers every call carries.
func (c *Client) newRequest(ctx context.Context, e endpoint, body io.Reader, contentType string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, e.method, c.url(e), body)
	if err != nil {
		return nil, &Error{Kind: KindUnknown, Endpoint: e.String(), Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Content-Type", contentType)
	return req, nil
}

// ErrAbandoned is the cause of an upstream call cut by Client.Abandon:
// the process is shutting down and could not wait for the answer. A call
// that was sent may still have acted upstream.
var ErrAbandoned = errors.New("upstream call abandoned: recoveryd is shutting down")

// Abandon cancels every upstream call in flight (AssignKey, SecureData and
// SecureFile uploads, whatever context their caller gave them) and fails
// every later call before it is sent, all with ErrAbandoned. A shutdown
// calls it when its deadline nears, so that handlers still waiting on the
// upstream return in time to record what they know. It returns how many
// calls were in flight.
func (c *Client) Abandon() int {
	n := c.inFlight.Load()
	c.abandon(ErrAbandoned)
	return int(n)
}

// track follows one call: the returned context also ends when the client
// is abandoned. release ends the following (and the context).
func (c *Client) track(ctx context.Context) (_ context.Context, release func()) {
	c.inFlight.Add(1)
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.abandoned, func() { cancel(ErrAbandoned) })
	if c.abandoned.Err() != nil {
		// NOTE: AfterFunc on an ended context runs f in a goroutine; a call
		// started after Abandon must see its context ended at once.
		cancel(ErrAbandoned)
	}
	return ctx, sync.OnceFunc(func() {
		stop()
		cancel(nil)
		c.inFlight.Add(-1)
	})
}

// send performs one attempt: the request, the metric, and the
// classification of everything but a 2xx. On a 2xx it returns the response
// with its body still open.
func (c *Client) send(e endpoint, req *http.Request) (resp *http.Response, uerr *Error) {
	if err := req.Context().Err(); err != nil {
		// NOTE: before the breaker and the transport, so a call abandoned
		// (or cancelled) before it started is known never to have left.
		return nil, &Error{Kind: KindUnavailable, Endpoint: e.String(), Sent: false,
			Message: "not sent: the call had ended", Err: fmt.Errorf("%w: %w", context.Cause(req.Context()), err)}
	}
	done, err := c.breaker.Allow()
	if err != nil {
		return nil, breakerOpen(e, err)
	}
	defer func() {
		if upstreamFault(uerr) {
			done(uerr)
		} else {
			// NOTE: a nil *Error in an error interface is not nil.
			done(nil)
		}
	}()
	var gotConn atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) }}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))

	start := time.Now()
	resp, err = c.http.Do(req)
	if err != nil {
		c.metrics.record(req.Context(), e, 0, time.Since(start))
		// NOTE: when ctx ends, the transport may report the symptom (a
		// closed body pipe, a reset) before the cause; keep the cause
		// visible to errors.Is.
		if cerr := req.Context().Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		if cause := context.Cause(req.Context()); errors.Is(cause, ErrAbandoned) && !errors.Is(err, ErrAbandoned) {
			err = fmt.Errorf("%w: %w", ErrAbandoned, err)
		}
		return nil, transportError(e.String(), err, gotConn.Load())
	}
	c.metrics.record(req.Context(), e, resp.StatusCode, time.Since(start))
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return resp, nil
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	uerr = statusError(e.String(), resp, body, c.now())
	if readErr != nil && len(body) == 0 {
		uerr.Err = readErr
	}
	return nil, uerr
}

// doJSON sends body (already encoded) to e, retrying per retryDelay, and
// returns the bounded 2xx body.
func (c *Client) doJSON(ctx context.Context, e endpoint, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	ctx, release := c.track(ctx)
	defer release()
	policy := retryPolicies[e]
	mayHaveActed := false
	for attempt := 0; ; attempt++ {
		req, err := c.newRequest(ctx, e, bytes.NewReader(body), "application/json")
		if err != nil {
			return nil, err
		}
		resp, uerr := c.send(e, req)
		if uerr == nil {
			body, err := readJSONBody(e, resp)
			if err == nil {
				if attempt > 0 && mayHaveActed && !policy.conflictOnRepeat {
					// An earlier attempt may have stored too: count the
					// possible extra copy.
					c.metrics.possibleDuplicate(ctx, e)
				}
				return body, nil
			}
			// NOTE: a 2xx whose body was cut off is an answer lost after
			// the upstream acted: retried like any other ambiguous
			// failure (a lost reset), not returned at once.
			if uerr, _ = errors.AsType[*Error](err); uerr == nil {
				return nil, err
			}
		}
		// NOTE: marked before NothingDone is asked again: a refusal after
		// an attempt that may have acted does not make the call harmless.
		uerr.AfterAmbiguousAttempt = mayHaveActed
		mayHaveActed = mayHaveActed || !uerr.NothingDone()
		delay, retry := retryDelay(policy, uerr, attempt)
		if !retry || attempt >= c.maxRetries || !fitsDeadline(ctx, delay) {
			return nil, uerr
		}
		c.metrics.retry(ctx, e, uerr.NothingDone())
		c.log.WarnContext(ctx, "retrying upstream call",
			slog.String("endpoint", e.String()),
			slog.String("kind", uerr.Kind.String()),
			slog.Int("status", uerr.Status),
			slog.Int("attempt", attempt+1),
			slog.Duration("delay", delay))
		if werr := c.wait(ctx, delay); werr != nil {
			return nil, uerr
		}
	}
}

// fitsDeadline reports whether waiting d still leaves ctx alive.
func fitsDeadline(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > d
}

// readJSONBody reads a 2xx body, at most maxJSONBody bytes.
func readJSONBody(e endpoint, resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONBody+1))
	if err != nil {
		return nil, &Error{Kind: KindUnavailable, Endpoint: e.String(), Status: resp.StatusCode, Sent: true,
			Message: "reading the response body failed", Err: err}
	}
	if len(body) > maxJSONBody {
		return nil, &Error{Kind: KindProtocol, Endpoint: e.String(), Status: resp.StatusCode, Sent: true,
			Message: fmt.Sprintf("response body exceeds %d bytes", maxJSONBody)}
	}
	return body, nil
}

// protocolError reports a 2xx whose body breaks the contract.
func protocolError(e endpoint, status int, format string, args ...any) *Error {
	return &Error{Kind: KindProtocol, Endpoint: e.String(), Status: status, Sent: true,
		Message: sanitize(fmt.Sprintf(format, args...), maxErrorText)}
}

// invalidRequest reports a request the adapter refuses to send.
func invalidRequest(e endpoint, field, problem string) *Error {
	return &Error{Kind: KindInvalid, Endpoint: e.String(), Sent: false,
		Message: "request not sent: " + field + " " + problem,
		Fields:  map[string]string{field: problem}}
}
