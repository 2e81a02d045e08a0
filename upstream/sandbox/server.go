package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
)

// Paths the emulator serves.
const (
	PathHealth     = "/healthz"
	PathJWKS       = "/.well-known/jwks.json"
	PathAssignKey  = "/v1/partner/keys"
	PathSecureData = "/v1/partner/secure/data"
	PathSecureFile = "/v1/partner/secure/file"
	// PathInspectKeys and PathInspectBackups are the emulator's own
	// inspection endpoints (no real upstream has them).
	PathInspectKeys    = "/sandbox/v1/keys"
	PathInspectBackups = "/sandbox/v1/backups"
	// PathInspectFaults counts partner requests and the faults injected
	// into them (Config.Faults).
	PathInspectFaults = "/sandbox/v1/faults"
)

// Server is the emulated Partner Key Service. It is safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   *store
	pool    *keyPool // nil when Config.KeySource is set
	signing *signingKeys
	auth    *authenticator
	limiter *rateLimiter
	faults  *faultInjector
	handler http.Handler
	tel     *telemetry
	closed  atomic.Bool
}

// New loads (or creates) the state and returns a Server that is ready to
// serve. Close it to stop the background key generation.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tel, err := newTelemetry()
	if err != nil {
		return nil, fmt.Errorf("sandbox: creating metrics: %w", err)
	}
	st, err := openStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	signing, err := newSigningKeys(cfg.SigningKeys, cfg.DataDir, cfg.Now())
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		store:   st,
		signing: signing,
		auth:    newAuthenticator(cfg.Tokens),
		limiter: newRateLimiter(cfg.RateLimit, cfg.RateBurst),
		faults:  newFaultInjector(cfg),
		tel:     tel,
	}
	if cfg.KeySource == nil {
		poolDir := ""
		if cfg.DataDir != "" {
			poolDir = filepath.Join(cfg.DataDir, poolDirName)
		}
		s.pool, err = newKeyPool(poolDir, cfg.PoolSize, generateRecoveryKey, st.isAssignedPublic, cfg.Logger)
		if err != nil {
			return nil, err
		}
	}
	s.handler = s.routes()
	s.log.Info("sandbox ready",
		"data_dir", cfg.DataDir,
		"keys", len(st.listKeys()),
		"backups", len(st.listBackups()),
		"signing_kid", signing.active.KID,
		"misbehave", cfg.Misbehave,
		"rate_limit", cfg.RateLimit,
		"faults", cfg.Faults,
		"latency", cfg.Latency,
		"max_file_bytes", cfg.MaxFileBytes)
	return s, nil
}

// generateRecoveryKey is the pool's generator (a variable so in-package
// tests can exercise the pool without paying for RSA-4096 generation).
var generateRecoveryKey = func() (*rsa.PrivateKey, error) {
	return keycrypto.GenerateRecoveryKey(rand.Reader)
}

// routes builds the mux. Every route is registered twice: with its method,
// and without one so that other methods get the contract's JSON error body
// instead of the mux's plain-text 405.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	route := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, h)
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", method)
			writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Type: errTypeMethodNotAllowed,
				Message: fmt.Sprintf("%s %s is not served; use %s", r.Method, path, method)})
		})
	}
	route(http.MethodGet, PathHealth, s.handleHealth)
	route(http.MethodGet, PathJWKS, s.handleJWKS)
	// NOTE: faults sit in front of authentication, as a WAN link or a
	// gateway would.
	route(http.MethodPost, PathAssignKey, s.withFaults(s.partner(s.assignKey)))
	route(http.MethodPost, PathSecureData, s.withFaults(s.partner(s.secureData)))
	route(http.MethodPost, PathSecureFile, s.withFaults(s.partner(s.secureFile)))
	if !s.cfg.NoInspection {
		route(http.MethodGet, PathInspectKeys, s.handleListKeys)
		route(http.MethodGet, PathInspectKeys+"/{key_id}/private-key", s.handlePrivateKey)
		route(http.MethodGet, PathInspectBackups, s.handleListBackups)
		route(http.MethodGet, PathInspectBackups+"/{backup_id}/content", s.handleBackupContent)
		route(http.MethodPost, PathInspectBackups+"/{backup_id}/recover", s.handleRecover)
		route(http.MethodGet, PathInspectFaults, s.handleFaults)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errNotFound("No such endpoint: "+r.URL.Path))
	})
	return mux
}

// ServeHTTP serves the contract's endpoints, the JWKS, health and the
// inspection endpoints, logging one line per request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &requestLog{ResponseWriter: w, status: http.StatusOK}
	ctx, span := s.tel.startSpan(r)
	r = r.WithContext(context.WithValue(ctx, requestLogKey{}, rec))
	s.handler.ServeHTTP(rec, r)
	s.tel.finish(ctx, span, r, rec, time.Since(start))
	attrs := append([]any{
		"method", r.Method,
		"path", r.URL.Path,
		"route", r.Pattern,
		"status", rec.status,
		"duration", time.Since(start),
	}, rec.attrs...)
	level := slog.LevelInfo
	if rec.status >= 500 {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "sandbox request", attrs...)
}

// Close stops the background key generation (waiting for a key in
// progress) and makes health report not ready. Persisted state stays.
func (s *Server) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.pool != nil {
		s.pool.close()
	}
	return nil
}

// Ready reports whether the server serves: true from New until Close.
func (s *Server) Ready() bool { return !s.closed.Load() }

// VerificationKeys returns the signing keys the JWKS publishes, so an
// in-process client (recoveryd's embedded mode, tests) can trust them
// without fetching the JWKS.
func (s *Server) VerificationKeys() *keycrypto.KeySet { return s.signing.keySet() }

// partnerHandler handles an authenticated partner request: a body for 200,
// or an error answer.
type partnerHandler func(r *http.Request, tok *Token) (any, *apiError)

// partner wraps h with the partner endpoints' checks, in the order a client
// meets them: authentication (401), scope (403), rate limit (429).
func (s *Server) partner(h partnerHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		now := s.cfg.Now()
		tok, apiErr := s.auth.authenticate(r, PartnerScope, now)
		if tok != nil {
			logAttrs(r, "token_id", tok.ID)
		}
		if apiErr == nil {
			apiErr = s.limiter.allow(tok.ID, now)
		}
		if apiErr != nil {
			writeError(w, apiErr)
			return
		}
		body, apiErr := h(r, tok)
		if apiErr != nil {
			logAttrs(r, "error", apiErr.Type)
			writeError(w, apiErr)
			return
		}
		writeJSON(w, http.StatusOK, body)
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	if !s.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "closed"})
		return
	}
	body := map[string]any{"status": "ok"}
	if s.pool != nil {
		body["pooled_keys"] = s.pool.available()
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	doc, err := s.signing.jwks()
	if err != nil {
		s.log.Error("sandbox: publishing the JWKS failed", "error", err)
		writeError(w, errInternal())
		return
	}
	w.Header().Set(headerCacheControl, jwksCacheControl)
	w.Header().Set("Content-Type", contentTypeJSON)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
}

// requestLog records the status and the safe attributes (ids, sizes) a
// handler adds for the request's log line.
type requestLog struct {
	http.ResponseWriter
	status int
	attrs  []any
}

type requestLogKey struct{}

func (l *requestLog) WriteHeader(status int) {
	l.status = status
	l.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (l *requestLog) Unwrap() http.ResponseWriter { return l.ResponseWriter }

// logAttrs adds key/value pairs to the request's log line. Only ids,
// sizes and types: never tokens, keys' material or plaintext.
func logAttrs(r *http.Request, kv ...any) {
	if l, ok := r.Context().Value(requestLogKey{}).(*requestLog); ok {
		l.attrs = append(l.attrs, kv...)
	}
}

// errKeySource wraps a failure to obtain a fresh key.
var errKeySource = errors.New("sandbox: no key available")

// takeKey gets a fresh RSA key for an assignment; done(true) after the
// assignment is recorded, done(false) when it failed.
func (s *Server) takeKey(ctx context.Context) (priv *rsa.PrivateKey, done func(assigned bool), err error) {
	if s.pool == nil {
		priv, err := s.cfg.KeySource()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errKeySource, err)
		}
		if priv == nil {
			return nil, nil, fmt.Errorf("%w: key source returned nil", errKeySource)
		}
		return priv, func(bool) {}, nil
	}
	k, err := s.pool.take(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errKeySource, err)
	}
	return k.private, func(assigned bool) {
		if assigned {
			s.pool.consumed(k)
		} else {
			s.pool.putBack(k)
		}
	}, nil
}
