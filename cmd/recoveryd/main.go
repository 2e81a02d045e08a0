package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/walletprovider/recoveryservice/cmd/recoveryd/app"
)

// Exit codes.
const (
	exitFailure = 1
	// exitUsage: the configuration is wrong; nothing was started.
	exitUsage = 2
	// exitCallsCut: shutdown did not drain within --shutdown-timeout:
	// calls in flight were cut (their callers got an error, and any
	// upstream outcome they may have left is recorded as unknown).
	exitCallsCut = 3
	// exitAuditBroken: --verify-audit found a broken link in the audit
	// trail (the output names the first).
	exitAuditBroken = 4
)

// shutdownHardMargin is how long past --shutdown-timeout the process may
// take to exit after SIGTERM, whatever is stuck (a handler, a telemetry
// flush, a registry close): then it exits with exitCallsCut. The orderly
// path needs at most app's handler grace (1 s) and the releases.
const shutdownHardMargin = 3 * time.Second

func main() {
	cfg, mode, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		configurationError(err)
	}
	if mode == modeCheckConfig {
		checkConfig(cfg)
		return
	}
	log := app.NewLogger(os.Stderr, cfg.LogLevel)
	// Packages given no logger (nil → slog.Default()) log as JSON too.
	slog.SetDefault(log)
	if mode == modeVerifyAudit {
		verifyAudit(cfg, log)
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default handling so a second
		// Ctrl-C ends a shutdown that is taking too long.
		<-ctx.Done()
		stop()
		// NOTE: the hard bound of shutdown, whatever Run is waiting on; a
		// crash at any point is safe (the registry is crash-consistent),
		// only slower to resolve.
		time.Sleep(cfg.ShutdownTimeout + shutdownHardMargin)
		log.Error("shutdown exceeded its hard bound: exiting now",
			"shutdown_timeout", cfg.ShutdownTimeout.String(), "margin", shutdownHardMargin.String())
		os.Exit(exitCallsCut)
	}()
	err = app.Run(ctx, cfg, log, app.Options{})
	if invalid, ok := errors.AsType[*app.ConfigError](err); ok {
		configurationError(invalid.Problems)
	}
	if errors.Is(err, app.ErrCallsCut) {
		log.Warn("recoveryd stopped: calls in flight were cut at the shutdown deadline", "exit_code", exitCallsCut)
		os.Exit(exitCallsCut)
	}
	if err != nil {
		log.Error("recoveryd failed", "error", err)
		os.Exit(exitFailure)
	}
	log.Info("recoveryd stopped")
}

// checkConfig is --check-config: the same Validate that Run applies first
// (files read, production guard), and nothing started. A deployment's
// configuration can so be checked before it is rolled out.
func checkConfig(cfg app.Config) {
	if err := cfg.Validate(); err != nil {
		configurationError(err)
	}
	fmt.Fprintf(os.Stdout, "recoveryd: configuration OK (environment %s)\n", cfg.Environment)
}

// verifyAudit is --verify-audit: it verifies the audit trail of the
// registry cfg names and exits 0 (every link verifies), exitAuditBroken
// (the first broken link is printed) or exitFailure.
func verifyAudit(cfg app.Config, log *slog.Logger) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.VerifyAudit(ctx, cfg, log, os.Stdout)
	stop()
	if invalid, ok := errors.AsType[*app.ConfigError](err); ok {
		configurationError(invalid.Problems)
	}
	switch {
	case errors.Is(err, app.ErrAuditChainBroken):
		os.Exit(exitAuditBroken)
	case err != nil:
		log.Error("audit verification failed", "error", err)
		os.Exit(exitFailure)
	}
}

// configurationError prints the problems with the flags, one per line, and
// exits with exitUsage: nothing was started.
func configurationError(problems error) {
	fmt.Fprintf(os.Stderr, "recoveryd: configuration error:\n%v\n", problems)
	os.Exit(exitUsage)
}
