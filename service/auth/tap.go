package auth

import (
	"context"

	"google.golang.org/grpc/tap"
)

// TapHandle is the server's InTapHandle (grpc.InTapHandle): it
// authenticates a call from its headers alone, in the connection's reader,
// before grpc-go creates the stream, so a call without valid credentials is
// refused before a byte of its message is read or any interceptor, handler
// or goroutine runs for it. Public methods (health, and reflection where
// public) pass. A refusal is the status, log line and metric the
// interceptor's would be; the interceptor still authenticates every call
// that passes (and puts the Caller in its context).
//
// A nil *Authenticator (authentication off) has no tap: it returns nil.
func (a *Authenticator) TapHandle() tap.ServerInHandle {
	if a == nil {
		return nil
	}
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if IsPublicMethod(info.FullMethodName, a.publicReflection) {
			return ctx, nil
		}
		// NOTE: the tap runs in the connection's reader goroutine, so this
		// must stay cheap: one SHA-256 and a comparison per caller, no I/O.
		_, fingerprint, ref := authenticate(ctx, a.set.Load(), a.trustDomain)
		if ref != nil {
			a.refused(ctx, info.FullMethodName, fingerprint, ref)
			return ctx, ref.status()
		}
		return ctx, nil
	}
}
