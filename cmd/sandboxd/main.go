package main

import (
	"context"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/walletprovider/recoveryservice/cmd/internal/telemetry"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// Server settings, named so each default is visible in one place.
const (
	defaultListen     = "127.0.0.1:8080"
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 10 * time.Second
	// telemetryFlushTimeout bounds the span flush at exit.
	telemetryFlushTimeout = 5 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, hooks{})
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintln(os.Stderr, "sandboxd:", err)
		os.Exit(1)
	}
}

// hooks let tests replace what would make them slow; production passes
// the zero value.
type hooks struct {
	// keySource replaces the background pool of generated RSA keys.
	keySource func() (*rsa.PrivateKey, error)
}

// options are the parsed command line.
type options struct {
	listen       string
	dataDir      string
	tokensFile   string
	maxFileBytes int64
	rateLimit    float64
	misbehave    string
	poolSize     int
	logLevel     slog.Level
	faults       map[string]float64
	faultSeed    int64
	faultDelay   time.Duration
	latency      time.Duration
	verifyData   bool
	testKeys     bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("sandboxd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", defaultListen, "address to listen on (host:port; keep it on loopback)")
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for persistent state (keys, backups, signing keys, key pool); empty keeps everything in memory")
	fs.StringVar(&o.tokensFile, "tokens-file", "", `JSON file {"tokens":[{"id","token","type","scopes":[...],"expires_at"}]}; empty accepts the development tokens`)
	fs.Int64Var(&o.maxFileBytes, "max-file-bytes", sandbox.DefaultMaxFileBytes, "largest file secure/file accepts (bytes)")
	fs.Float64Var(&o.rateLimit, "rate-limit", 0, "requests per second per token on the partner endpoints (0 = unlimited; over it: 429 with Retry-After)")
	fs.StringVar(&o.misbehave, "misbehave", "", "break the enclave signature on purpose: bad-signature, wrong-binding or swapped-key")
	fs.IntVar(&o.poolSize, "pool-size", sandbox.DefaultPoolSize, "fresh RSA-4096 keys kept ready in the background (~0.7 s of CPU each)")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "debug, info, warn or error")
	faults := fs.String("faults", "", "inject faults into partner requests: KIND=P,... with kinds 500, 503, 429 (Retry-After: 1), reset-before, reset-after, slow, truncated and probabilities adding up to at most 1; counted at GET "+sandbox.PathInspectFaults)
	fs.Int64Var(&o.faultSeed, "fault-seed", 0, "seed of the fault draws, for a reproducible run (0 = random)")
	fs.DurationVar(&o.faultDelay, "fault-delay", sandbox.DefaultFaultDelay, "how long the slow fault holds an answer")
	fs.DurationVar(&o.latency, "latency", 0, "delay added to every partner request, as a WAN link would")
	fs.BoolVar(&o.verifyData, "verify-data", true, "decrypt secure/data and check its checksum as the enclave does; --verify-data=false skips it, for benchmarks only")
	fs.BoolVar(&o.testKeys, "test-keys", false, "assign the committed test keys (keycrypto/testkeys, "+strconv.Itoa(testkeys.RSACount)+" RSA-4096 keys whose private halves are public) before generating any: for soak runs and tests, which would otherwise wait ~0.7 s of CPU per key; never for real material")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.faults, err = sandbox.ParseFaults(*faults); err != nil {
		return o, fmt.Errorf("--faults: %w", err)
	}
	if o.faultDelay <= 0 || o.latency < 0 {
		return o, errors.New("--fault-delay must be positive and --latency not negative")
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.maxFileBytes <= 0 {
		return o, errors.New("--max-file-bytes must be positive")
	}
	if o.poolSize <= 0 {
		return o, errors.New("--pool-size must be positive")
	}
	if o.rateLimit < 0 {
		return o, errors.New("--rate-limit must not be negative")
	}
	return o, nil
}

// run is main without the process: it serves until ctx ends, then shuts
// down gracefully.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, h hooks) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(telemetry.SlogHandler(stderr, o.logLevel))
	// Traces as the OTEL_* environment says (none by default); with the
	// otelhttp handler below, a request carrying traceparent (recoveryd's
	// upstream client sends it) gets a server span in the caller's trace.
	tel, err := telemetry.Setup(ctx, telemetry.Options{
		ServiceName: "sandboxd", ServiceVersion: telemetry.BuildVersion(), Logger: logger,
	})
	if err != nil {
		return err
	}
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.Background(), telemetryFlushTimeout)
		defer cancel()
		_ = tel.Shutdown(flushCtx) // best effort: spans are diagnostics, not results
	}()
	cfg := sandbox.Config{
		DataDir:      o.dataDir,
		MaxFileBytes: o.maxFileBytes,
		RateLimit:    o.rateLimit,
		Misbehave:    o.misbehave,
		PoolSize:     o.poolSize,
		Faults:       o.faults,
		FaultSeed:    o.faultSeed,
		FaultDelay:   o.faultDelay,
		Latency:      o.latency,

		SkipDataVerification: !o.verifyData,
		Logger:               logger,
	}
	switch {
	case h.keySource != nil:
		cfg.KeySource = h.keySource
	case o.testKeys:
		cfg.KeySource = testkeys.NewRSASource()
	}
	if o.tokensFile != "" {
		if cfg.Tokens, err = sandbox.LoadTokensFile(o.tokensFile); err != nil {
			return err
		}
	}
	emulator, err := sandbox.New(cfg)
	if err != nil {
		return err
	}
	defer emulator.Close()

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.listen, err)
	}
	srv := &http.Server{
		Handler:           otelhttp.NewHandler(emulator, "sandboxd"),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(stdout, "sandboxd listening on http://%s\n", ln.Addr())
	if o.tokensFile == "" {
		fmt.Fprintf(stdout, "development tokens: %s (scope %s), %s (no scope)\n",
			sandbox.DevPartnerToken, sandbox.PartnerScope, sandbox.DevNoScopeToken)
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	logger.Info("sandboxd shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return emulator.Close()
}
