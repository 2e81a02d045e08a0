package app

import (
	"cmp"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"

	"github.com/walletprovider/recoveryservice/cmd/internal/telemetry"
	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/audit"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// registryFileName is the SQLite registry's file under --data-dir.
const registryFileName = "registry.db"

// spoolDirName is the SecureFile spool's directory under --data-dir
// (service.Spool).
const spoolDirName = "spool"

// dataDirMode keeps the registry and the sandbox's private keys to the
// service's own user.
const dataDirMode = 0o700

// Options are what tests (and only tests) change about a run.
type Options struct {
	// Listener, when set, is served instead of listening on cfg.Listen.
	Listener net.Listener
	// AdminListener, when set, serves the admin endpoints instead of
	// listening on cfg.AdminListen, so a test knows the port it scrapes.
	AdminListener net.Listener
	// JWKSNow, when set, is the clock the JWKS fetcher judges a key's
	// validity and its cache by, so a test can rotate signing keys without
	// waiting.
	JWKSNow func() time.Time
	// SandboxKeySource, when set, supplies the embedded sandbox's RSA keys
	// instead of its background generator.
	SandboxKeySource func() (*rsa.PrivateKey, error)
	// SpanProcessor, when set, also sees every span of the run (an
	// in-memory recorder), besides the exporters OTEL_TRACES_EXPORTER picks.
	SpanProcessor sdktrace.SpanProcessor
	// Stderr receives the development banner; nil means os.Stderr.
	Stderr io.Writer
	// OnCallersReload, when set, is told the outcome of every reload of
	// the callers file after the first (SIGHUP reloads are asynchronous).
	OnCallersReload func(error)
	// ReadinessInterval, when set, replaces readinessProbeInterval, so a
	// test sees a registry outage within milliseconds.
	ReadinessInterval time.Duration
	// Registry, when set, is used instead of the registry cfg names (a store
	// two replicas share, or one the test reads); the run does not close it.
	Registry *registry.Store
	// Service, when set, adjusts the service's Config before it is built (a
	// shorter CallTimeout, a test clock).
	Service func(*service.Config)
	// CallFinished, when set, is told the full method name of every call
	// whose handler has returned, so a test can wait for work a caller
	// abandoned. It sits inside the whole chain and sees only what reached
	// a handler.
	CallFinished func(fullMethod string)
	// DisableAudit runs without the audit trail: only for the benchmark
	// that measures what auditing costs against a server without it.
	DisableAudit bool
	// AuditStore, when set, wraps the registry as the audit writer sees it
	// (appends that fail, as a full disk makes them).
	AuditStore func(audit.Store) audit.Store
	// NoReconcilerLoop starts no background reconciler even when the
	// service has a reconcile interval (its answers still say
	// ASSIGNMENT_BEING_RESOLVED): for tests that drive Reconciler passes
	// themselves and must not race the loop's pass at start.
	NoReconcilerLoop bool
}

// ConfigError is Run's refusal of a configuration: nothing was started.
// Problems holds one line per problem (Config.Validate).
type ConfigError struct {
	Problems error
}

func (e *ConfigError) Error() string { return "invalid configuration:\n" + e.Problems.Error() }

func (e *ConfigError) Unwrap() error { return e.Problems }

// app is a wired recoveryd: the gRPC server, its health, what must answer
// before it is ready, and what to release when it stops.
type app struct {
	log       *slog.Logger
	cfg       Config
	grpc      *grpc.Server
	health    *healthService
	readiness *readiness
	// upstream is the adapter the service calls; shutdown abandons its
	// calls in flight when the deadline nears.
	upstream *upstream.Client
	// reconciler resolves unknown assignments while the server runs; nil
	// when --reconcile-interval is 0.
	reconciler *service.Reconciler
	// closers run in reverse order on close.
	closers []func() error
}

// Run builds recoveryd from cfg, serves until ctx ends, shuts down
// gracefully and releases everything it opened.
func Run(ctx context.Context, cfg Config, log *slog.Logger, opts Options) (err error) {
	served, adminServed := false, false
	defer func() {
		// serve closes the listener; a run that never got there closes a
		// listener it was given.
		if !served && opts.Listener != nil {
			_ = opts.Listener.Close()
		}
		if !adminServed && opts.AdminListener != nil {
			_ = opts.AdminListener.Close()
		}
	}()
	// NOTE: the one validation of cfg: main relies on it (ConfigError).
	if err := cfg.Validate(); err != nil {
		return &ConfigError{Problems: err}
	}
	log.Info("starting recoveryd", "config", cfg)
	if banner := developmentBanner(cfg, os.Getenv); banner != "" {
		_, _ = io.WriteString(cmp.Or[io.Writer](opts.Stderr, os.Stderr), banner)
	}
	if cfg.TLSCert == "" && cfg.TLSTerminatedByProxy {
		// Production allows plaintext gRPC only this way (productionProblems).
		log.Info("serving plaintext gRPC behind a proxy or mesh that terminates TLS (--tls-terminated-by-proxy): only it may reach --listen", "listen", cfg.Listen)
	}
	tel, err := setupTelemetry(ctx, log, opts.SpanProcessor)
	if err != nil {
		return err
	}
	// NOTE: deferred first so it runs last: spans of the shutdown are flushed.
	defer func() { err = errors.Join(err, shutdownTelemetry(tel)) }()
	a, err := build(ctx, cfg, log, opts)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, a.close()) }()
	defer a.runReconciler(ctx)()
	stopAdmin, err := startAdmin(ctx, cfg, log, tel, a.health, opts.AdminListener)
	if err != nil {
		return err
	}
	adminServed = true
	defer func() { err = errors.Join(err, stopAdmin()) }()

	lis := opts.Listener
	if lis == nil {
		if lis, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listening on --listen %s: %w", cfg.Listen, err)
		}
	}
	served = true
	// Connections beyond --max-connections wait in the accept queue until
	// one closes: each served connection costs buffers and goroutines.
	lis = netutil.LimitListener(lis, cfg.MaxConnections)
	return serve(ctx, log, a.grpc, a.health, a.readiness, lis, cfg.ShutdownTimeout, a.upstream.Abandon)
}

// build opens the registry, connects the upstream (starting the embedded
// sandbox when no --upstream-url is set), and assembles the gRPC server.
// On error, whatever it had opened is closed again.
func build(ctx context.Context, cfg Config, log *slog.Logger, opts Options) (_ *app, err error) {
	a := &app{log: log, cfg: cfg}
	defer func() {
		if err != nil {
			err = errors.Join(err, a.close())
		}
	}()

	store := opts.Registry
	if store == nil {
		if store, err = openRegistry(ctx, cfg, log); err != nil {
			return nil, err
		}
		a.closers = append(a.closers, store.Close)
	}

	client, keys, err := a.connectUpstream(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	a.upstream = client

	sec, err := a.secure(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	if !opts.DisableAudit {
		if sec.audit, err = a.startAudit(cfg, store, opts.AuditStore); err != nil {
			return nil, err
		}
	}
	// NOTE: under --data-dir even with PostgreSQL: the spool is this
	// replica's, never shared.
	spool, err := service.OpenSpool(filepath.Join(cfg.DataDir, spoolDirName))
	if err != nil {
		return nil, fmt.Errorf("preparing the SecureFile spool under --data-dir: %w", err)
	}
	hashKey, err := cfg.registryHMACKey()
	if err != nil {
		return nil, err
	}
	svcConfig := service.Config{
		RequestHashKey:    hashKey,
		Spool:             spool,
		StreamIdleTimeout: cfg.StreamIdleTimeout,
		Upstream:          client,
		Keys:              keys,
		Registry:          store,
		// Enforced with a callers file, Disabled (development) without.
		Authz:        sec.authn.Mode(),
		MaxFileBytes: cfg.MaxFileBytes,
		CallTimeout:  cfg.UpstreamCallTimeout,
		Logger:       log.With("component", "service"),

		ReconcileInterval: cfg.ReconcileInterval,
	}
	if opts.Service != nil {
		opts.Service(&svcConfig)
	}
	svc := service.New(svcConfig)
	if !opts.NoReconcilerLoop {
		a.reconciler = svc.NewReconciler()
	}
	a.health = newHealthService()
	if a.grpc, err = newGRPCServer(log.With("component", "grpc"), svc, a.health, service.StatusFromValidation, sec, overloadFromConfig(cfg), opts.CallFinished); err != nil {
		return nil, err
	}
	// serve stops the server; this stops one that never served (a start
	// that failed later), whose stream workers would otherwise stay. Last
	// in, so it runs first: before the audit writer and the registry close.
	a.closers = append(a.closers, func() error { a.grpc.Stop(); return nil })
	// The operators' service, on the same port and through the same chain
	// (whose operator position admits operators only); reflection lists it.
	recoveryv1.RegisterRecoveryAdminServiceServer(a.grpc, service.NewAdmin(svc))
	registryPing := registryCheck(store.Ping, store.ProbeWrite)
	startup := []readinessCheck{
		registryPing,
		// NOTE: fetching the verification keys once proves both that the
		// JWKS is reachable and that its content parses; AssignKey cannot
		// work without them.
		{name: "verification keys", check: func(ctx context.Context) error {
			_, err := keys.Keys(ctx)
			return err
		}},
	}
	// Only the registry is re-probed once SERVING: see readiness.reprobe.
	a.readiness = newReadiness(log.With("component", "readiness"), a.health, startup, []readinessCheck{registryPing}, opts.ReadinessInterval)
	return a, nil
}

// runReconciler starts the reconciler, if any, until ctx ends, and returns
// the function that stops it: it stops claiming, abandons the re-send in
// flight (every call has drained by then: the shutdown's hard bound holds)
// and waits until that re-send has recorded what it knows.
func (a *app) runReconciler(ctx context.Context) (stop func()) {
	if a.reconciler == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.reconciler.Run(ctx)
	}()
	return func() {
		cancel()
		a.upstream.Abandon()
		<-done
	}
}

// auditCloseTimeout bounds how long closing waits for the audit records
// still queued to be committed.
const auditCloseTimeout = 10 * time.Second

// startAudit starts this process's audit writer (a chain of its own in the
// registry) and returns the chain's audit position: enforcing in
// production, warning in development. The writer is closed, its queue
// committed, after the gRPC server has stopped.
func (a *app) startAudit(cfg Config, store *registry.Store, wrap func(audit.Store) audit.Store) (*auditor, error) {
	var appends audit.Store = store
	if wrap != nil {
		appends = wrap(appends)
	}
	w, err := audit.Start(audit.Config{
		Store:     appends,
		Retention: cfg.AuditRetention,
		ExportDir: filepath.Join(cfg.DataDir, auditExportDirName),
		Logger:    a.log,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the audit writer: %w", err)
	}
	a.closers = append(a.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), auditCloseTimeout)
		defer cancel()
		return w.Close(ctx)
	})
	return newAuditor(w, store, cfg.Environment == EnvProduction, a.log.With("component", "audit")), nil
}

// openRegistry opens PostgreSQL for a postgres:// --database-url (or
// --database-url-file), else the
// SQLite registry under --data-dir.
func openRegistry(ctx context.Context, cfg Config, log *slog.Logger) (*registry.Store, error) {
	dbURL, err := cfg.databaseURL()
	if err != nil {
		return nil, err
	}
	if dbURL != "" {
		store, err := registry.OpenPostgres(ctx, dbURL, registry.WithLogger(log))
		if err != nil {
			// NOTE: the URL may hold a password; name it redacted.
			return nil, fmt.Errorf("opening the PostgreSQL registry %s: %w", redactDatabaseURL(dbURL), err)
		}
		return store, nil
	}
	if err := os.MkdirAll(cfg.DataDir, dataDirMode); err != nil {
		return nil, fmt.Errorf("creating --data-dir: %w", err)
	}
	path := filepath.Join(cfg.DataDir, registryFileName)
	store, err := registry.OpenSQLite(ctx, path, registry.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("opening the SQLite registry %s: %w", path, err)
	}
	return store, nil
}

// connectUpstream builds the upstream client and the verification key
// source: the configured upstream, or the embedded sandbox.
func (a *app) connectUpstream(ctx context.Context, cfg Config, opts Options) (*upstream.Client, upstream.KeySource, error) {
	if cfg.embeddedSandbox() {
		return a.connectEmbeddedSandbox(ctx, cfg, opts)
	}
	token, err := upstream.LoadToken(cfg.UpstreamTokenFile)
	if err != nil {
		return nil, nil, err
	}
	development := cfg.Environment == EnvDevelopment
	// nil (the system roots) unless --upstream-ca-file adds a private CA.
	transport, err := upstreamTransport(cfg)
	if err != nil {
		return nil, nil, err
	}
	client, err := upstream.NewClient(upstream.Config{BaseURL: cfg.UpstreamURL, Token: token, Transport: transport, AllowHTTP: development,
		CallTimeout: cfg.UpstreamCallTimeout})
	if err != nil {
		return nil, nil, fmt.Errorf("configuring the upstream client: %w", err)
	}
	var keys upstream.KeySource
	if cfg.VerificationKeysFile != "" {
		keys, err = upstream.LoadKeySourceFile(cfg.VerificationKeysFile)
	} else {
		keys, err = upstream.NewJWKSFetcher(upstream.JWKSConfig{URL: cfg.JWKSURL, Transport: transport, AllowHTTP: development, Now: opts.JWKSNow})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("configuring the verification keys: %w", err)
	}
	if cfg.VerificationKeyFingerprints != "" {
		pins, err := upstream.ParseVerificationKeyFingerprints(cfg.VerificationKeyFingerprints)
		if err != nil {
			return nil, nil, fmt.Errorf("--verification-key-fingerprints: %w", err)
		}
		keys = upstream.PinKeys(keys, pins)
	}
	return client, keys, nil
}

// connectEmbeddedSandbox starts the emulator in-process and trusts its
// JWKS, fetched over its loopback listener like a remote one.
func (a *app) connectEmbeddedSandbox(ctx context.Context, cfg Config, opts Options) (*upstream.Client, upstream.KeySource, error) {
	sb, err := startEmbeddedSandbox(ctx, a.log, cfg.DataDir, opts.SandboxKeySource)
	if err != nil {
		return nil, nil, err
	}
	a.closers = append(a.closers, sb.close)
	a.log.Warn("EMBEDDED SANDBOX IN USE: keys and backups go to the in-process emulator, not to the Partner Key Service; set --upstream-url for a real upstream",
		"sandbox_url", sb.baseURL, "sandbox_state", filepath.Join(cfg.DataDir, sandboxDirName))
	client, err := upstream.NewClient(upstream.Config{BaseURL: sb.baseURL, Token: sandbox.DevPartnerToken, AllowHTTP: true,
		CallTimeout: cfg.UpstreamCallTimeout})
	if err != nil {
		return nil, nil, fmt.Errorf("configuring the upstream client for the embedded sandbox: %w", err)
	}
	keys, err := upstream.NewJWKSFetcher(upstream.JWKSConfig{URL: sb.jwksURL(), AllowHTTP: true, Now: opts.JWKSNow})
	if err != nil {
		return nil, nil, fmt.Errorf("trusting the embedded sandbox's JWKS: %w", err)
	}
	return client, keys, nil
}

// close releases what build opened, newest first.
func (a *app) close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	return errors.Join(errs...)
}

// NewLogger writes JSON lines at level and above to w, with the trace_id and
// span_id of the call a line was logged in.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(telemetry.SlogHandler(w, level))
}
