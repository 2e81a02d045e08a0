package auth

import (
	"context"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// adminService is the service every method of which needs an operator.
var adminService = recoveryv1.RecoveryAdminService_ServiceDesc.ServiceName

// IsOperatorMethod reports whether fullMethod ("/package.Service/Method")
// belongs to the recovery.v1.RecoveryAdminService, every method of which
// only operators may call (Mode.AuthorizeOperator).
func IsOperatorMethod(fullMethod string) bool {
	service, _, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	return ok && service == adminService
}

// AuthorizeOperator returns nil when the call in ctx may use the operators'
// service: its authenticated caller has RoleOperator or, when the mode is
// Disabled and the call carries no caller, it comes from a loopback peer
// (development on one machine; anyone who can reach a non-loopback
// listener without credentials must not settle assignments). Otherwise a
// *Refusal: ReasonOperatorRoleRequired, or ReasonNotAuthenticated when the
// mode is Enforced and ctx has no caller.
func (m Mode) AuthorizeOperator(ctx context.Context) error {
	caller, ok := CallerFrom(ctx)
	switch {
	case ok && caller.HasRole(RoleOperator):
	case ok:
		instruments.decision(ctx, stageAuthorize, outcomeDenied, ReasonOperatorRoleRequired)
		return &Refusal{Reason: ReasonOperatorRoleRequired, Metadata: map[string]string{
			"caller": caller.Name,
			"role":   RoleOperator,
		}}
	case m != Disabled:
		return m.notAuthenticated(ctx)
	case !loopbackPeer(ctx):
		instruments.decision(ctx, stageAuthorize, outcomeDenied, ReasonOperatorRoleRequired)
		return &Refusal{Reason: ReasonOperatorRoleRequired, Metadata: map[string]string{
			"role": RoleOperator,
			"peer": "not loopback: without caller authentication only loopback peers are operators",
		}}
	}
	instruments.decision(ctx, stageAuthorize, outcomeAllowed, recoveryv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	return nil
}

// loopbackPeer reports whether the call comes over the loopback interface
// (or a Unix socket, which is local by construction).
func loopbackPeer(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return false
	}
	switch a := p.Addr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

// OperatorUnaryInterceptor refuses every RecoveryAdminService call that
// mode.AuthorizeOperator refuses, before its request is validated or
// handled; toStatus turns the *Refusal into the caller's status. Other
// services' calls pass through. Being keyed on the service, it covers every
// method the service has or will get.
func OperatorUnaryInterceptor(mode Mode, toStatus func(error) error) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if IsOperatorMethod(info.FullMethod) {
			if err := mode.AuthorizeOperator(ctx); err != nil {
				return nil, toStatus(err)
			}
		}
		return handler(ctx, req)
	}
}

// OperatorStreamInterceptor is OperatorUnaryInterceptor for streams.
func OperatorStreamInterceptor(mode Mode, toStatus func(error) error) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if IsOperatorMethod(info.FullMethod) {
			if err := mode.AuthorizeOperator(ss.Context()); err != nil {
				return toStatus(err)
			}
		}
		return handler(srv, ss)
	}
}
