package auth

import (
	"context"

	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
)

// UnaryServerInterceptor authenticates every unary call that NeedsCaller
// selects, with AuthFunc, and puts the Caller in the handler's context. On a
// nil *Authenticator (authentication off) it passes every call through.
//
// NOTE: go-grpc-middleware lets a service opt out of authentication by
// implementing AuthFuncOverride. Here no service can: the interceptor hides
// the service implementation from it, so the only public methods are those
// IsPublicMethod names.
func (a *Authenticator) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	if a == nil {
		return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			return handler(ctx, req)
		}
	}
	authenticate := grpcauth.UnaryServerInterceptor(a.AuthFunc)
	withoutOverride := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		hidden := *info
		hidden.Server = nil
		return authenticate(ctx, req, &hidden, handler)
	}
	return selector.UnaryServerInterceptor(withoutOverride, NeedsCaller(a.publicReflection))
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls; the
// handler sees the Caller in stream.Context().
func (a *Authenticator) StreamServerInterceptor() grpc.StreamServerInterceptor {
	if a == nil {
		return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return handler(srv, ss)
		}
	}
	authenticate := grpcauth.StreamServerInterceptor(a.AuthFunc)
	withoutOverride := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		// The service implementation is withheld from the auth interceptor
		// and handed back to the handler untouched.
		return authenticate(nil, ss, info, func(_ any, authenticated grpc.ServerStream) error {
			return handler(srv, authenticated)
		})
	}
	return selector.StreamServerInterceptor(withoutOverride, NeedsCaller(a.publicReflection))
}
