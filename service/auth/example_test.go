package auth_test

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/walletprovider/recoveryservice/service/auth"
)

// Example shows how recoveryd assembles caller authentication: the
// authenticator (nil when no callers file is configured), SIGHUP reloads,
// optional mTLS, the interceptors in the chain's auth position, and the
// Mode handed to the handlers.
func Example() {
	ctx := context.Background()
	logger := slog.Default()

	var authenticator *auth.Authenticator // nil: authentication off
	if callersFile := "/etc/recoveryd/callers.json"; callersFile != "" {
		a, err := auth.New(auth.Config{CallersFile: callersFile, PublicReflection: false, Logger: logger})
		if err != nil {
			logger.Error("caller authentication", "error", err)
			return
		}
		defer a.WatchSIGHUP(ctx, logger)()
		authenticator = a
	}

	opts := []grpc.ServerOption{
		// logging → metrics → auth → validation → recovery
		grpc.ChainUnaryInterceptor( /* logging, metrics, */ authenticator.UnaryServerInterceptor() /* , validation, recovery */),
		grpc.ChainStreamInterceptor( /* logging, metrics, */ authenticator.StreamServerInterceptor() /* , validation, recovery */),
	}
	if tlsConfig, err := auth.ServerTLSConfig("/etc/recoveryd/tls.crt", "/etc/recoveryd/tls.key", "/etc/recoveryd/client-ca.crt"); err == nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	_ = grpc.NewServer(opts...)

	// Handlers: Authorize before acting for an organisation, Scope for
	// listings, CallerName for the record.
	mode := authenticator.Mode()
	handlerCtx := auth.WithCaller(ctx, auth.Caller{Name: "wallet-api", Organisations: []string{"org-1"}})
	if err := mode.Authorize(handlerCtx, "org-1"); err != nil {
		return // a *auth.Refusal (ORGANISATION_NOT_ALLOWED) for the service's error mapping
	}
	_ = auth.CallerName(handlerCtx) // recorded as assigned_by / stored_by
}
