package app

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// Embedded sandbox settings.
const (
	// sandboxDirName is the embedded sandbox's state directory under
	// --data-dir, so keys it assigned stay usable across restarts.
	sandboxDirName = "sandbox"
	// sandboxReadHeaderTimeout bounds request headers on the embedded
	// sandbox's loopback listener.
	sandboxReadHeaderTimeout = 10 * time.Second
	// sandboxShutdownTimeout bounds draining the embedded sandbox; recoveryd
	// has already drained its own calls by then.
	sandboxShutdownTimeout = 5 * time.Second
)

// embeddedSandbox is the upstream emulator served in-process on a loopback
// listener: a real HTTP server, so the adapter, otelhttp and file streaming
// behave exactly as they do against a remote upstream.
type embeddedSandbox struct {
	emulator *sandbox.Server
	http     *http.Server
	served   chan error
	// baseURL is http://127.0.0.1:<port>.
	baseURL string
}

// startEmbeddedSandbox starts the emulator with its state under dataDir.
// keySource nil means the emulator's own background key pool (RSA-4096
// generation); tests pass the committed test key pool.
func startEmbeddedSandbox(ctx context.Context, log *slog.Logger, dataDir string, keySource func() (*rsa.PrivateKey, error)) (*embeddedSandbox, error) {
	dir := filepath.Join(dataDir, sandboxDirName)
	emulator, err := sandbox.New(sandbox.Config{
		DataDir:   dir,
		KeySource: keySource,
		Logger:    log.With("component", "sandbox"),
		// The inspection routes hand out private keys and recover backups
		// without a token: anyone on this host could reach the loopback
		// listener. Only sandboxd, a test tool, serves them.
		NoInspection: true,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the embedded sandbox (state in %s): %w", dir, err)
	}
	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("listening for the embedded sandbox: %w", err), emulator.Close())
	}
	s := &embeddedSandbox{
		emulator: emulator,
		http: &http.Server{
			Handler:           emulator,
			ReadHeaderTimeout: sandboxReadHeaderTimeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		served:  make(chan error, 1),
		baseURL: "http://" + lis.Addr().String(),
	}
	go func() { s.served <- s.http.Serve(lis) }()
	return s, nil
}

// jwksURL is where the embedded sandbox publishes its signing keys.
func (s *embeddedSandbox) jwksURL() string { return s.baseURL + sandbox.PathJWKS }

// close stops the HTTP server, then the emulator.
func (s *embeddedSandbox) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), sandboxShutdownTimeout)
	defer cancel()
	errShutdown := s.http.Shutdown(ctx)
	if errShutdown != nil {
		// Connections still busy after the timeout are cut.
		errShutdown = errors.Join(errShutdown, s.http.Close())
	}
	if err := <-s.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errShutdown = errors.Join(errShutdown, err)
	}
	return errors.Join(errShutdown, s.emulator.Close())
}
