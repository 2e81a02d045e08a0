package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/walletprovider/recoveryservice/cmd/internal/telemetry"
)

// Exit codes.
const (
	exitFailure = 1
	// exitUsage: the configuration is wrong; nothing was started.
	exitUsage = 2
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "recoveryd: configuration error:\n%v\n", err)
		os.Exit(exitUsage)
	}
	log := newLogger(os.Stderr, cfg.LogLevel)
	// Packages given no logger (nil → slog.Default()) log as JSON too.
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default handling so a second
		// Ctrl-C ends a shutdown that is taking too long.
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, cfg, log, runOptions{}); err != nil {
		log.Error("recoveryd failed", "error", err)
		os.Exit(exitFailure)
	}
	log.Info("recoveryd stopped")
}

// newLogger writes JSON lines at level and above to w, with the trace_id and
// span_id of the call a line was logged in.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(telemetry.SlogHandler(w, level))
}
