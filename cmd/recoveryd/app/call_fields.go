package app

import (
	"context"
	"log/slog"
	"sync"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/auth"
)

// Names of the per-call log fields, next to go-grpc-middleware's grpc.*.
const (
	fieldCaller   = "caller"
	fieldKeyID    = "key_id"
	fieldBackupID = "backup_id"
)

// callFields is what a call's log line should say that only becomes known
// once the call is under way: who called (after authentication) and which
// key and backup it touched (from its messages).
//
// go-grpc-middleware's logging interceptor computes its fields when the call
// starts and never sees the contexts made further in, so the logging position
// puts an empty callFields in the context first, an inner position fills it
// as the call goes, and the slog adapter appends it to the finish line. It is
// locked because a stream's messages may be sent and received from different
// goroutines than the one that logs.
type callFields struct {
	mu       sync.Mutex
	caller   string
	keyID    string
	backupID string
}

// callFieldsKey is the context key of a call's callFields.
type callFieldsKey struct{}

// withCallFields returns ctx carrying a new, empty callFields.
func withCallFields(ctx context.Context) context.Context {
	return context.WithValue(ctx, callFieldsKey{}, &callFields{})
}

// callFieldsFrom returns the call's callFields, or nil outside the chain.
func callFieldsFrom(ctx context.Context) *callFields {
	f, _ := ctx.Value(callFieldsKey{}).(*callFields)
	return f
}

// setCaller records the authenticated caller's name; "" (no caller) is
// ignored.
func (f *callFields) setCaller(name string) {
	if f == nil || name == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.caller = name
}

// noteMessage records the ids a request or response carries. Only the id
// fields are read, never payloads, and only ids shaped like the ids the
// service hands out (UUIDs): requests are read before validation, and a value
// that is not an id may be anything a caller put there, a secret included.
//
// For SecureFile only the header carries ids; a chunk is never looked at.
func (f *callFields) noteMessage(m any) {
	if f == nil {
		return
	}
	switch m := m.(type) {
	case *recoveryv1.AssignKeyResponse:
		f.noteIDs(m.GetKey().GetKeyId(), "")
	case *recoveryv1.SecureDataRequest:
		f.noteIDs(m.GetKeyId(), "")
	case *recoveryv1.SecureDataResponse:
		f.noteIDs(m.GetBackup().GetKeyId(), m.GetBackup().GetBackupId())
	case *recoveryv1.SecureFileRequest:
		f.noteIDs(m.GetHeader().GetKeyId(), "")
	case *recoveryv1.SecureFileResponse:
		f.noteIDs(m.GetBackup().GetKeyId(), m.GetBackup().GetBackupId())
	case *recoveryv1.GetKeyRequest:
		f.noteIDs(m.GetKeyId(), "")
	case *recoveryv1.GetKeyResponse:
		f.noteIDs(m.GetKey().GetKeyId(), "")
	case *recoveryv1.ListBackupsRequest:
		f.noteIDs(m.GetKeyId(), "")
	}
}

// noteIDs records the ids that are well-formed; a later id replaces an
// earlier one (a response's key_id is the resolved one).
func (f *callFields) noteIDs(keyID, backupID string) {
	keyOK, backupOK := isUUID(keyID), isUUID(backupID)
	if !keyOK && !backupOK {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if keyOK {
		f.keyID = keyID
	}
	if backupOK {
		f.backupID = backupID
	}
}

// logArgs are the known fields as slog key-value arguments; unknown ones are
// left out rather than logged empty.
func (f *callFields) logArgs() []any {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var args []any
	for _, kv := range [...]struct{ key, value string }{
		{fieldCaller, f.caller}, {fieldKeyID, f.keyID}, {fieldBackupID, f.backupID},
	} {
		if kv.value != "" {
			args = append(args, kv.key, kv.value)
		}
	}
	return args
}

// isUUID reports whether s is a UUID in the 8-4-4-4-12 hex form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// loggingUnary is the logging position for unary calls: go-grpc-middleware's
// interceptor, given a context that already holds the call's callFields.
func loggingUnary(log *slog.Logger, opts ...logging.Option) grpc.UnaryServerInterceptor {
	logCall := logging.UnaryServerInterceptor(slogAdapter(log), opts...)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return logCall(withCallFields(ctx), req, info, handler)
	}
}

// loggingStream is loggingUnary for streaming calls.
func loggingStream(log *slog.Logger, opts ...logging.Option) grpc.StreamServerInterceptor {
	logCall := logging.StreamServerInterceptor(slogAdapter(log), opts...)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return logCall(srv, &contextStream{ServerStream: ss, ctx: withCallFields(ss.Context())}, info, handler)
	}
}

// contextStream is a ServerStream with another context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the replaced context.
func (s *contextStream) Context() context.Context { return s.ctx }

// callFieldsUnary fills the call's callFields from the caller, the request
// and, when the call succeeds, the response.
func callFieldsUnary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		f := callFieldsFrom(ctx)
		f.setCaller(auth.CallerName(ctx))
		f.noteMessage(req)
		resp, err := handler(ctx, req)
		if err == nil {
			f.noteMessage(resp)
		}
		return resp, err
	}
}

// callFieldsStream is callFieldsUnary for streams: it watches every message
// received and sent.
func callFieldsStream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		f := callFieldsFrom(ss.Context())
		if f == nil {
			return handler(srv, ss)
		}
		f.setCaller(auth.CallerName(ss.Context()))
		return handler(srv, &fieldsStream{ServerStream: ss, fields: f})
	}
}

// fieldsStream notes the ids of the messages that pass through it.
type fieldsStream struct {
	grpc.ServerStream
	fields *callFields
}

// RecvMsg receives m and notes its ids.
func (s *fieldsStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	s.fields.noteMessage(m)
	return nil
}

// SendMsg notes m's ids and sends it.
func (s *fieldsStream) SendMsg(m any) error {
	s.fields.noteMessage(m)
	return s.ServerStream.SendMsg(m)
}
