package auth

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// WatchSIGHUP reloads the callers file every time the process receives
// SIGHUP, until ctx is done or the returned stop is called, so operators
// rotate tokens and change organisations without a restart. Each reload is
// logged with its outcome (the file and the number of callers, or what is
// wrong with the new file, which is then not used); logger nil means
// slog.Default().
//
// NOTE: the signal handler is registered before WatchSIGHUP returns, so a
// SIGHUP sent right after it returns is never lost (nor, by Go's default,
// fatal). stop waits until the watcher has exited; after it, SIGHUP has its
// default effect again unless another watcher is registered.
func (a *Authenticator) WatchSIGHUP(ctx context.Context, logger *slog.Logger) (stop func()) {
	if logger == nil {
		logger = slog.Default()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := a.Reload(); err != nil {
					logger.LogAttrs(ctx, slog.LevelError, "SIGHUP: callers file rejected; the previous callers stay in force",
						slog.String("error", err.Error()))
					continue
				}
				logger.LogAttrs(ctx, slog.LevelInfo, "SIGHUP: callers file reloaded",
					slog.String("file", a.path), slog.Int("callers", a.Callers().Len()))
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
