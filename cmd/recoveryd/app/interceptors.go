package app

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	"buf.build/go/protovalidate"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/auth"
)

// interceptor is one position of the chain: the same concern for unary and
// streaming calls, so the two chains cannot drift apart.
type interceptor struct {
	name   string
	unary  grpc.UnaryServerInterceptor
	stream grpc.StreamServerInterceptor
}

// interceptorChain is the server's one interceptor chain, outermost first.
// toStatus turns a protovalidate error into the status callers get
// (service.StatusFromValidation). authn authenticates callers; nil means
// caller authentication is off (its position then passes calls through).
//
// limits are the default overload limits.
//
// aud writes the audit trail; nil (tests of other positions) passes calls
// through.
func interceptorChain(log *slog.Logger, validator protovalidate.Validator, toStatus func(error) error, authn *auth.Authenticator, limits overloadLimits, aud *auditor) []interceptor {
	logOpts := []logging.Option{
		// NOTE: only the finish line: payload events would log requests,
		// and requests carry plaintext.
		logging.WithLogOnEvents(logging.FinishCall),
	}
	recoveryOpts := []recovery.Option{recovery.WithRecoveryHandlerContext(panicToInternal(log))}
	buckets := newCallerBuckets(limits)
	inflight := newInFlight(limits)
	var gate *fairGate
	if limits.activeCalls > 0 {
		gate = newFairGate(limits.activeCalls)
	}
	return []interceptor{
		// logging is outermost so that it sees every call, including those
		// rejected further in, with the final code (after validation and
		// recovery rewrote it) and the full duration. It also gives the call
		// an empty callFields that the callFields position fills and its
		// finish line reports (caller, key_id, backup_id).
		{"logging", loggingUnary(log, logOpts...), loggingStream(log, logOpts...)},
		// audit is inside logging, so a call it refuses (AUDIT_UNAVAILABLE)
		// is still logged, and outside auth and everything else, so every
		// refusal (unauthenticated, rate limited, invalid) leaves a record
		// with the final code and reason. It reads the caller and ids from
		// the callFields the logging position created and the inner
		// positions fill. Calls the pre-authentication tap refuses are
		// recorded by the tap's wrapper (auditor.tap).
		{"audit", aud.unary(), aud.stream()},
		// metrics has no interceptor: the otelgrpc stats handler
		// (grpc.StatsHandler in newGRPCServer) measures every call per method
		// and final code, from outside the whole chain, so even calls that
		// fail before any interceptor runs are counted.
		//
		// auth is before validation, so that an unauthenticated caller
		// learns nothing about the request rules (nor whether its bytes even
		// decode); it skips health always, and reflection in development.
		{"auth", authn.UnaryServerInterceptor(), authn.StreamServerInterceptor()},
		// callFields sits just inside auth, where the caller is known, and
		// outside validation, so a rejected call's line still names its
		// caller; it reads only well-formed ids from the messages, since they
		// are not validated yet.
		{"callFields", callFieldsUnary(), callFieldsStream()},
		// operator refuses every RecoveryAdminService call from a caller
		// without the operator role (without caller authentication: from a
		// non-loopback peer); other services pass. It is inside auth and
		// callFields, so it knows the caller and a refused call's line names
		// it, and outside validation, so a non-operator learns nothing about
		// the admin requests' rules.
		{"operator", auth.OperatorUnaryInterceptor(authn.Mode(), service.StatusFromRefusal), auth.OperatorStreamInterceptor(authn.Mode(), service.StatusFromRefusal)},
		// rateLimit is inside auth, so the bucket is the authenticated
		// caller's (one caller cannot spend another's tokens, and an
		// unauthenticated flood spends none), and inside callFields, so a
		// refused call's line names its caller; it is outside validation and
		// everything after it, so a refused call costs no further work.
		// Health is exempt.
		{"rateLimit", rateLimitUnary(buckets), rateLimitStream(buckets)},
		// concurrency is inside rateLimit, so a call refused for its rate
		// never holds a slot, and outside everything else, so the slot is
		// held for the call's whole life (a SecureFile stream's included)
		// and a refused call does no further work. Health is exempt.
		{"concurrency", concurrencyUnary(inflight), concurrencyStream(inflight)},
		// admission is inside concurrency, so a caller over its own cap
		// never takes a place in the queue, and outside validation and the
		// handler, so a waiting call holds nothing but its request; unary
		// calls wait there for their caller's turn while --max-active-calls
		// are active (fairGate). Streams and health pass.
		{"admission", admissionUnary(gate, limits), passStream},
		// validation rejects malformed requests before any handler code
		// runs (for streams: every received message), so handlers only see
		// well-formed input.
		{"validation", validationUnary(validator, toStatus), validationStream(validator, toStatus)},
		// recovery is innermost so that a panicking handler still produces a
		// status the outer interceptors log and count; it wraps only the
		// handler, whose panics are the ones worth catching.
		{"recovery", recovery.UnaryServerInterceptor(recoveryOpts...), recovery.StreamServerInterceptor(recoveryOpts...)},
	}
}

// unaryInterceptors lists the chain's unary halves in order.
func unaryInterceptors(chain []interceptor) []grpc.UnaryServerInterceptor {
	out := make([]grpc.UnaryServerInterceptor, len(chain))
	for i, c := range chain {
		out[i] = c.unary
	}
	return out
}

// streamInterceptors lists the chain's stream halves in order.
func streamInterceptors(chain []interceptor) []grpc.StreamServerInterceptor {
	out := make([]grpc.StreamServerInterceptor, len(chain))
	for i, c := range chain {
		out[i] = c.stream
	}
	return out
}

// slogAdapter lets go-grpc-middleware's logging interceptor write to slog,
// adding the fields the call's callFields has gathered by then.
func slogAdapter(log *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, level logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(level), msg, append(fields, callFieldsFrom(ctx).logArgs()...)...)
	})
}

// internalMessage is the whole of what a caller learns about a panic.
const internalMessage = "internal error"

// maxPanicValueLen bounds the panic value in the log line.
const maxPanicValueLen = 512

// panicToInternal logs a handler panic with its stack and answers a generic
// Internal status: the panic value is for operators, never for callers.
func panicToInternal(log *slog.Logger) recovery.RecoveryHandlerFuncContext {
	return func(ctx context.Context, p any) error {
		value := fmt.Sprint(p)
		if len(value) > maxPanicValueLen {
			value = value[:maxPanicValueLen] + "…"
		}
		// NOTE: the deferred recover runs before the stack unwinds, so this
		// stack still shows where the panic happened.
		log.ErrorContext(ctx, "handler panicked", "panic", value, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, internalMessage)
	}
}

// validationUnary rejects an invalid unary request with toStatus of the
// violations.
func validationUnary(validator protovalidate.Validator, toStatus func(error) error) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := validateMessage(validator, toStatus, req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// validationStream validates every message the handler receives: a stream's
// later messages (SecureFile chunks) are as untrusted as its first.
//
// The handler sees an invalid message as a failed receive; whatever it then
// returns, the caller gets the validation status, so the field violations
// reach the caller even from a handler that wraps receive errors.
func validationStream(validator protovalidate.Validator, toStatus func(error) error) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		vs := &validatingStream{ServerStream: ss, validator: validator, toStatus: toStatus}
		err := handler(srv, vs)
		if rejected := vs.rejection(); rejected != nil {
			return rejected
		}
		return err
	}
}

// validatingStream validates each message as it is received and remembers
// the first rejection.
type validatingStream struct {
	grpc.ServerStream
	validator protovalidate.Validator
	toStatus  func(error) error

	mu       sync.Mutex
	rejected error
}

// RecvMsg receives m and validates it.
func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	err := validateMessage(s.validator, s.toStatus, m)
	if err != nil {
		s.mu.Lock()
		if s.rejected == nil {
			s.rejected = err
		}
		s.mu.Unlock()
	}
	return err
}

// rejection is the status of the first invalid message, or nil.
func (s *validatingStream) rejection() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// validateMessage is nil for a valid message, else the status for it.
func validateMessage(validator protovalidate.Validator, toStatus func(error) error, m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		// Every registered service uses protobuf messages; anything else is
		// a wiring bug, not the caller's fault.
		return status.Errorf(codes.Internal, "%s", internalMessage)
	}
	// A request the codec could not decode arrives empty and marked
	// (requestCodec); it is reported as what it is, not as missing fields.
	if verr := undecodable(msg); verr != nil {
		return toStatus(verr)
	}
	if err := validator.Validate(msg); err != nil {
		return toStatus(err)
	}
	return nil
}
