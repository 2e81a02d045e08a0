package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/walletprovider/recoveryservice/keycrypto"
)

// JWKS fetching limits.
const (
	// DefaultJWKSMaxAge is how long a JWKS is cached when the response has
	// no usable Cache-Control max-age (the contract's published value).
	DefaultJWKSMaxAge = 600 * time.Second
	// maxJWKSMaxAge caps a served max-age so a misconfigured header cannot
	// pin a key set (and a revoked key) for days.
	maxJWKSMaxAge = 24 * time.Hour
	// minJWKSRefreshInterval is how recent a fetch makes Refresh reuse it:
	// a burst of failed verifications then costs one fetch, not one each.
	minJWKSRefreshInterval = 10 * time.Second
	// maxJWKSBody bounds the JWKS document.
	maxJWKSBody = 64 << 10
	// maxKeyFile bounds a JWKS or PEM key file read from disk.
	maxKeyFile = 1 << 20
	// jwksFetchTimeout bounds one fetch.
	jwksFetchTimeout = 15 * time.Second
)

// KeySource supplies enclave verification keys.
type KeySource interface {
	// Keys returns the cached keys (fetching if none are cached/fresh).
	Keys(ctx context.Context) ([]keycrypto.VerificationKey, error)
	// Refresh forces one re-fetch (used once when no cached key verifies).
	Refresh(ctx context.Context) ([]keycrypto.VerificationKey, error)
}

// JWKSConfig configures a JWKS fetcher.
type JWKSConfig struct {
	URL       string
	Transport http.RoundTripper // nil: default; wrapped with otelhttp
	AllowHTTP bool              // development only
	Now       func() time.Time  // nil: time.Now
}

// NewJWKSFetcher fetches the JWKS over HTTPS without following redirects,
// caching it for its Cache-Control max-age (default 600s).
//
// Keys serves the cached set while it is fresh and fetches when it is not;
// Refresh fetches now (unless the set was fetched in the last few seconds).
// Concurrent fetches are coalesced into one. A failed fetch returns an error
// and never extends the life of the cached set: once it expires, Keys fails
// closed until a fetch succeeds.
func NewJWKSFetcher(cfg JWKSConfig) (KeySource, error) {
	u, err := parseJWKSURL(cfg.URL, cfg.AllowHTTP)
	if err != nil {
		return nil, err
	}
	transport := cfg.Transport
	if transport == nil {
		transport = defaultTransport()
	}
	f := &jwksFetcher{
		url: u,
		client: &http.Client{
			Transport: otelhttp.NewTransport(transport, otelhttp.WithSpanNameFormatter(spanName), otelhttp.WithPropagators(upstreamPropagator)),
			// The contract: fetched without following redirects. A redirect
			// comes back as its 3xx response, which fetch rejects by name.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		now: cfg.Now,
	}
	if f.now == nil {
		f.now = time.Now
	}
	return f, nil
}

func parseJWKSURL(raw string, allowHTTP bool) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("JWKS URL is required (e.g. %s)", ProductionJWKSURL)
	}
	u, err := parseServiceURL("JWKS URL", raw, allowHTTP)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// jwksFetcher is the KeySource behind NewJWKSFetcher.
type jwksFetcher struct {
	url    string
	client *http.Client
	now    func() time.Time

	mu        sync.Mutex
	set       *keycrypto.KeySet
	fetchedAt time.Time
	expires   time.Time
	inflight  *jwksFetch

	// joined, when set, is called each time a caller joins a fetch already
	// in flight (tests use it to prove coalescing).
	joined func()
}

// jwksFetch is one fetch in progress; waiters block on done.
type jwksFetch struct {
	done chan struct{}
	set  *keycrypto.KeySet
	err  error
}

func (f *jwksFetcher) Keys(ctx context.Context) ([]keycrypto.VerificationKey, error) {
	f.mu.Lock()
	now := f.now()
	if f.set != nil && now.Before(f.expires) {
		set := f.set
		f.mu.Unlock()
		return set.Eligible(now), nil
	}
	f.mu.Unlock()
	return f.fetchShared(ctx)
}

func (f *jwksFetcher) Refresh(ctx context.Context) ([]keycrypto.VerificationKey, error) {
	f.mu.Lock()
	now := f.now()
	if f.set != nil && now.Before(f.expires) && now.Sub(f.fetchedAt) < minJWKSRefreshInterval {
		set := f.set
		f.mu.Unlock()
		return set.Eligible(now), nil
	}
	f.mu.Unlock()
	return f.fetchShared(ctx)
}

// fetchShared joins the fetch in progress or starts one, and returns the
// keys eligible now from its result.
func (f *jwksFetcher) fetchShared(ctx context.Context) ([]keycrypto.VerificationKey, error) {
	f.mu.Lock()
	call := f.inflight
	leader := call == nil
	if leader {
		call = &jwksFetch{done: make(chan struct{})}
		f.inflight = call
	}
	joined := f.joined
	f.mu.Unlock()
	if !leader && joined != nil {
		joined()
	}

	if leader {
		// NOTE: the fetch runs on the leader's context but is not cancelled
		// with it, so waiters are not failed by one caller going away; the
		// fetch timeout still bounds it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchTimeout)
		set, maxAge, err := f.fetch(fctx)
		cancel()
		f.mu.Lock()
		if err == nil {
			now := f.now()
			f.set, f.fetchedAt, f.expires = set, now, now.Add(maxAge)
		}
		call.set, call.err = set, err
		f.inflight = nil
		f.mu.Unlock()
		close(call.done)
	} else {
		select {
		case <-call.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the JWKS fetch: %w", ctx.Err())
		}
	}
	if call.err != nil {
		return nil, call.err
	}
	return call.set.Eligible(f.now()), nil
}

// fetch performs one GET of the JWKS and returns the parsed set and how
// long it may be cached.
func (f *jwksFetcher) fetch(ctx context.Context) (*keycrypto.KeySet, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("fetching JWKS %s: %w", f.url, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", DefaultUserAgent)
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("fetching JWKS %s: %w", f.url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		return nil, 0, fmt.Errorf("fetching JWKS %s: refusing redirect %q (JWKS redirects are never followed): configure the final URL", f.url, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, 0, fmt.Errorf("fetching JWKS %s: unexpected status %q", f.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBody+1))
	if err != nil {
		return nil, 0, fmt.Errorf("fetching JWKS %s: reading the body: %w", f.url, err)
	}
	if len(body) > maxJWKSBody {
		return nil, 0, fmt.Errorf("fetching JWKS %s: %w: document exceeds %d bytes", f.url, keycrypto.ErrInvalidJWKS, maxJWKSBody)
	}
	set, err := keycrypto.ParseJWKS(body)
	if err != nil {
		return nil, 0, fmt.Errorf("fetching JWKS %s: %w", f.url, err)
	}
	return set, cacheMaxAge(resp.Header.Values("Cache-Control")), nil
}

// cacheMaxAge reads max-age from Cache-Control; no-store or no-cache mean
// "do not reuse" (0), absent or malformed means DefaultJWKSMaxAge.
func cacheMaxAge(values []string) time.Duration {
	maxAge := DefaultJWKSMaxAge
	for _, v := range values {
		for _, directive := range strings.Split(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(directive), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return 0
			case "max-age":
				secs, err := strconv.ParseInt(strings.Trim(arg, `"`), 10, 64)
				if err != nil || secs < 0 {
					continue
				}
				maxAge = min(time.Duration(min(secs, int64(maxJWKSMaxAge/time.Second)))*time.Second, maxJWKSMaxAge)
			}
		}
	}
	return maxAge
}

// NewStaticKeySource serves a fixed key set (JWKS file or PEM keys).
// Refresh has nothing to fetch and returns the same keys.
func NewStaticKeySource(set *keycrypto.KeySet) KeySource {
	return &staticKeySource{set: set, now: time.Now}
}

type staticKeySource struct {
	set *keycrypto.KeySet
	now func() time.Time
}

func (s *staticKeySource) Keys(context.Context) ([]keycrypto.VerificationKey, error) {
	if s.set == nil {
		return nil, fmt.Errorf("static verification key source: %w", keycrypto.ErrNoVerificationKey)
	}
	return s.set.Eligible(s.now()), nil
}

func (s *staticKeySource) Refresh(ctx context.Context) ([]keycrypto.VerificationKey, error) {
	return s.Keys(ctx)
}

// LoadKeySourceFile reads a JWKS JSON file or a PEM file of P-256 keys.
// A file whose first non-blank character is "{" is a JWKS; anything else is
// parsed as PEM.
func LoadKeySourceFile(path string) (KeySource, error) {
	fh, err := os.Open(path) //nolint:gosec // G304: the path is the operator's configuration, not a caller's input
	if err != nil {
		return nil, fmt.Errorf("reading verification key file: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading verification key file %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("verification key file %s: %w: larger than %d bytes", path, keycrypto.ErrInvalidJWKS, maxKeyFile)
	}
	var set *keycrypto.KeySet
	if strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
		set, err = keycrypto.ParseJWKS(data)
	} else {
		set, err = keycrypto.ParseVerificationKeysPEM(data)
	}
	if err != nil {
		return nil, fmt.Errorf("verification key file %s: %w", path, err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("verification key file %s: %w: it holds no usable P-256 key", path, keycrypto.ErrNoVerificationKey)
	}
	return NewStaticKeySource(set), nil
}
