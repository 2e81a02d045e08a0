package sandboxtest

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// Options are Start's choices. The zero value starts an in-memory emulator
// with the development tokens over plain HTTP.
type Options struct {
	// Config configures the emulator. Start fills two zero fields:
	// KeySource becomes testkeys.NewRSASource() (the committed pool; a test
	// never waits for RSA-4096 generation) and Logger logs every level as
	// text into Sandbox.Logs.
	Config sandbox.Config
	// Wrap, when set, wraps the emulator's handler, to gate or observe the
	// requests a test sends.
	Wrap func(http.Handler) http.Handler
	// TLS serves https:// with httptest's self-signed certificate; trust it
	// through Sandbox.HTTP.Certificate() or Sandbox.HTTP.Client().
	TLS bool
}

// Sandbox is an emulator serving one test.
type Sandbox struct {
	// Server is the emulator itself (its VerificationKeys, for instance).
	Server *sandbox.Server
	// HTTP is the loopback server in front of it.
	HTTP *httptest.Server
	// URL is HTTP's base URL, for an upstream client's BaseURL.
	URL string
	// Logs holds what the emulator logged when Options.Config.Logger was
	// nil (mirrored to the test's output); it stays empty when the test
	// brought its own logger.
	Logs *LogBuffer
	// Inspect reads the emulator's inspection endpoints.
	Inspect *Client
}

// Start serves a new emulator until the test ends; a configuration the
// emulator refuses fails the test. Cleanup stops the HTTP server before the
// emulator, so no request reaches a closed store.
func Start(t testing.TB, opts Options) *Sandbox {
	t.Helper()
	cfg := opts.Config
	if cfg.KeySource == nil {
		cfg.KeySource = testkeys.NewRSASource()
	}
	logs := &LogBuffer{Mirror: t.Output()}
	if cfg.Logger == nil {
		cfg.Logger = logs.Logger()
	}
	srv, err := sandbox.New(cfg)
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	var h http.Handler = srv
	if opts.Wrap != nil {
		h = opts.Wrap(srv)
	}
	hs := httptest.NewUnstartedServer(h)
	if opts.TLS {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(func() {
		hs.Close()
		if err := srv.Close(); err != nil {
			t.Errorf("closing the sandbox: %v", err)
		}
	})
	return &Sandbox{Server: srv, HTTP: hs, URL: hs.URL, Logs: logs, Inspect: NewClient(hs.URL, hs.Client())}
}
