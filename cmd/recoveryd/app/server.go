package app

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/walletprovider/recoveryservice/cmd/internal/telemetry"
	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// Server limits. Each is sized for what the contract carries.
const (
	// maxRecvMsgBytes fits one SecureFile chunk (at most 1 MiB) with room for
	// framing; anything larger is refused before it is decoded.
	maxRecvMsgBytes = 2 << 20
	// maxSendMsgBytes fits a full ListKeys page (500 keys of about 2.5 KiB
	// with hex and PEM) with room.
	maxSendMsgBytes = 4 << 20
	// maxHeaderListBytes bounds the header block of one call (metadata and
	// pseudo-headers, as HPACK-decoded), so that work before authentication
	// is small: a bearer token, traceparent and the usual grpc-* headers fit
	// in a few hundred bytes. A larger header list resets the stream before
	// any of it reaches recoveryd's code.
	maxHeaderListBytes = 16 << 10
	// streamWindowBytes is each call's HTTP/2 receive window: how much of a
	// caller's next message may wait in recoveryd's memory, unread, while
	// the handler is still forwarding the previous one. It is fixed at the
	// smallest window grpc-go takes: left dynamic, grpc-go grows it with its
	// bandwidth-delay estimate up to 16 MiB per call, so each SecureFile
	// upload could park megabytes of chunks it has not asked for yet. A
	// message larger than the window still arrives whole: when the handler
	// starts reading one, grpc-go opens the window for all of it, so a
	// 1 MiB chunk costs one window update, a round trip, not sixteen. The
	// trade-off is a caller far away: it cannot send ahead more than this
	// while a chunk is forwarded, so over a 50 ms WAN a stream moves about
	// one chunk per round trip.
	streamWindowBytes = 64 << 10
	// connWindowBytes is each connection's HTTP/2 receive window. grpc-go
	// acknowledges a connection's bytes as it reads them off the socket,
	// not when a handler consumes them, so this bounds bytes on the wire,
	// not memory (streamWindowBytes bounds that); 16 MiB is what the
	// bandwidth-delay estimate could grow it to, so many calls sharing a
	// connection are not slowed. Setting either window turns the estimate
	// off for both.
	connWindowBytes = 16 << 20
	// maxConcurrentStreams bounds the calls one connection may have open,
	// so one client cannot hold every upload slot.
	maxConcurrentStreams = 256
	// connectionTimeout bounds the connection handshake.
	connectionTimeout = 10 * time.Second
	// keepaliveMinClientPing is the shortest ping interval a client may use
	// (more frequent pings are a GOAWAY); pings without calls are allowed so
	// idle pooled connections stay warm.
	keepaliveMinClientPing = 15 * time.Second
	// keepaliveServerPing: after this long without activity the server
	// pings the client to find dead connections...
	keepaliveServerPing = 2 * time.Minute
	// keepaliveServerPingTimeout: ...and closes the connection when the ping
	// is not answered within this.
	keepaliveServerPingTimeout = 20 * time.Second
	// maxConnectionIdle closes connections with no calls for this long.
	maxConnectionIdle = 15 * time.Minute
	// maxConnectionAge makes clients reconnect now and then, so load spreads
	// over replicas added since they connected...
	maxConnectionAge = 30 * time.Minute
	// maxConnectionAgeGrace ...while calls in flight get this long to finish:
	// longer than the upstream adapter's 10-minute file upload timeout.
	maxConnectionAgeGrace = 11 * time.Minute
)

// serviceName is the RecoveryService's name in health and reflection.
var serviceName = recoveryv1.RecoveryService_ServiceDesc.ServiceName

// newGRPCServer assembles the gRPC server: its limits, its codec, its
// interceptor chain, TLS, the RecoveryService, health and reflection.
// toStatus converts validation errors into the statuses callers get; sec
// says how callers are authenticated (its zero value: not at all, over
// plaintext); limits are the default overload limits. callFinished, when
// not nil, is Options.CallFinished.
func newGRPCServer(log *slog.Logger, svc recoveryv1.RecoveryServiceServer, healthSrv *healthService, toStatus func(error) error, sec serverSecurity, limits overloadLimits, callFinished func(string)) (*grpc.Server, error) {
	validator, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("building the request validator: %w", err)
	}
	chain := interceptorChain(log, validator, toStatus, sec.authn, limits, sec.audit)
	chunks := newChunkBuffers()
	opts := []grpc.ServerOption{
		// A RecoveryService request that does not decode (a string that is
		// not UTF-8) reaches validation marked, for an InvalidArgument,
		// instead of failing as Internal before any interceptor runs. It
		// decodes SecureFile chunks into buffers lent by chunks.
		grpc.ForceServerCodecV2(newRequestCodec(chunks)),
		// Traces (continuing the caller's traceparent) and per-method, per-code
		// duration metrics; health and reflection are left out.
		grpc.StatsHandler(telemetry.GRPCServerStatsHandler()),
		grpc.MaxRecvMsgSize(maxRecvMsgBytes),
		grpc.MaxSendMsgSize(maxSendMsgBytes),
		grpc.StaticStreamWindowSize(streamWindowBytes),
		grpc.StaticConnWindowSize(connWindowBytes),
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		// A call runs on a worker goroutine that stays, with the stack it
		// grew, instead of a new goroutine per call that grows its stack
		// again (newstack and copystack were a tenth of a repeat
		// AssignKey's CPU). A call that finds every worker busy gets a
		// goroutine of its own, as without workers.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))), //nolint:gosec // a CPU count, far below 2^32.
		grpc.MaxHeaderListSize(maxHeaderListBytes),
		grpc.ConnectionTimeout(connectionTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveMinClientPing,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     maxConnectionIdle,
			MaxConnectionAge:      maxConnectionAge,
			MaxConnectionAgeGrace: maxConnectionAgeGrace,
			Time:                  keepaliveServerPing,
			Timeout:               keepaliveServerPingTimeout,
		}),
		grpc.ChainUnaryInterceptor(unaryInterceptors(chain)...),
		grpc.ChainStreamInterceptor(streamInterceptors(chain)...),
		// NOTE: after the chain, so innermost: the stream that returns the
		// chunks' buffers must see the handler's own receives and its
		// return. It is no policy, so it is not a position of the chain.
		grpc.ChainStreamInterceptor(chunks.streamInterceptor),
	}
	if sec.creds != nil {
		opts = append(opts, sec.creds)
	}
	if tap := sec.audit.tap(sec.authn.TapHandle()); tap != nil {
		// Calls without valid credentials are refused from their headers,
		// before their message is read; the chain's auth interceptor still
		// authenticates every call that passes.
		opts = append(opts, grpc.InTapHandle(tap))
	}
	if callFinished != nil {
		// NOTE: chained after the chain above, so innermost: it sees the
		// handler return, not the chain's refusals.
		opts = append(opts,
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				defer callFinished(info.FullMethod)
				return h(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				defer callFinished(info.FullMethod)
				return h(srv, ss)
			}))
	}
	srv := grpc.NewServer(opts...)
	recoveryv1.RegisterRecoveryServiceServer(srv, svc)
	healthpb.RegisterHealthServer(srv, healthSrv)
	// Register serves both reflection v1 and v1alpha (grpcurl and ghz still
	// speak v1alpha).
	reflection.Register(srv)
	return srv, nil
}
