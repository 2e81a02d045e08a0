package app

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// wireBytes is a request already encoded by hand, sent as it is.
type wireBytes []byte

// handMadeCodec is a client codec that sends wireBytes untouched (so a test
// can send what no protobuf library would encode) and decodes replies as
// protobuf.
type handMadeCodec struct{}

func (handMadeCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(wireBytes))}, nil
}

func (handMadeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func (handMadeCodec) Name() string { return "proto" }

// withField appends field num holding the raw bytes value to msg's encoding.
func withField(t *testing.T, msg proto.Message, num protowire.Number, value []byte) []byte {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, value)
}

// invoke sends raw as a unary request to method over conn.
func invoke(ctx context.Context, conn *grpc.ClientConn, method string, raw []byte, reply proto.Message) error {
	return conn.Invoke(ctx, method, wireBytes(raw), reply, grpc.ForceCodecV2(handMadeCodec{}))
}

// sendFileRaw opens SecureFile and sends raw as its first message.
func sendFileRaw(ctx context.Context, conn *grpc.ClientConn, raw []byte) error {
	desc := &grpc.StreamDesc{StreamName: "SecureFile", ClientStreams: true}
	stream, err := conn.NewStream(ctx, desc, recoveryv1.RecoveryService_SecureFile_FullMethodName, grpc.ForceCodecV2(handMadeCodec{}))
	if err != nil {
		return err
	}
	_ = stream.SendMsg(wireBytes(raw)) // a refusal surfaces on RecvMsg
	_ = stream.CloseSend()
	return stream.RecvMsg(&recoveryv1.SecureFileResponse{})
}

// violation is the first BadRequest violation of err.
func violation(err error) *errdetails.BadRequest_FieldViolation {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0]
		}
	}
	return nil
}

// TestUndecodableRequests sends hand-made bytes over a real TCP connection
// to a real run: a string field that is not UTF-8, at any depth, or bytes
// that are not protobuf at all, are InvalidArgument naming the field (not
// grpc-go's Internal "failed to unmarshal"); only after authentication; a
// caller cannot forge the codec's marker; other services keep grpc-go's
// behaviour; nothing reaches the upstream.
func TestUndecodableRequests(t *testing.T) {
	log, logs := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI)
	lis, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := startReady(t, cfg, log, Options{Listener: lis})
	ctx := testCtx(t)
	authed := withToken(ctx, walletAPI.token)
	notUTF8 := []byte("alice\xff\xfe")

	assignNoUser := assignKeyRequest("", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)
	assignNoOrg := assignKeyRequest("bob", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)
	assignNoOrg.Organisation = nil
	org := withField(t, &recoveryv1.Organisation{CustomerName: testCustomerName}, 1, notUTF8)
	header := fileHeader("6f1c2d3e-4a5b-4c6d-8e7f-901234567890").GetHeader()
	header.Metadata = &recoveryv1.BackupMetadata{ContentType: "application/octet-stream"}
	headerBytes := withField(t, header, 3, withField(t, &recoveryv1.BackupMetadata{ContentType: "application/octet-stream"}, 1, notUTF8))
	// A valid GetKey carrying the codec's marker field, claiming key_id is
	// not UTF-8.
	forgedMarker := protowire.AppendVarint(protowire.AppendVarint(nil, uint64(problemInvalidUTF8)), 1)
	forged := withField(t, &recoveryv1.GetKeyRequest{KeyId: "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"}, markerField, forgedMarker)

	tests := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
		// field and rule of the BadRequest violation, when code is
		// InvalidArgument.
		field, rule string
	}{
		{"AssignKey user_identifier not UTF-8", func() error {
			return invoke(authed, srv.conn, recoveryv1.RecoveryService_AssignKey_FullMethodName, withField(t, assignNoUser, 1, notUTF8), &recoveryv1.AssignKeyResponse{})
		}, codes.InvalidArgument, "INVALID_REQUEST", "user_identifier", "PROTO_UTF8"},
		{"AssignKey organisation.customer_id not UTF-8", func() error {
			return invoke(authed, srv.conn, recoveryv1.RecoveryService_AssignKey_FullMethodName, withField(t, assignNoOrg, 3, org), &recoveryv1.AssignKeyResponse{})
		}, codes.InvalidArgument, "INVALID_REQUEST", "organisation.customer_id", "PROTO_UTF8"},
		{"SecureFile header.metadata.description not UTF-8", func() error {
			raw := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), headerBytes)
			return sendFileRaw(authed, srv.conn, raw)
		}, codes.InvalidArgument, "INVALID_REQUEST", "header.metadata.description", "PROTO_UTF8"},
		{"ListKeys truncated", func() error {
			raw := protowire.AppendTag(nil, 1, protowire.BytesType)
			raw = append(protowire.AppendVarint(raw, 100), "acme"...)
			return invoke(authed, srv.conn, recoveryv1.RecoveryService_ListKeys_FullMethodName, raw, &recoveryv1.ListKeysResponse{})
		}, codes.InvalidArgument, "INVALID_REQUEST", "", "PROTO_WIRE"},
		{"AssignKey not UTF-8, without a token", func() error {
			return invoke(ctx, srv.conn, recoveryv1.RecoveryService_AssignKey_FullMethodName, withField(t, assignNoUser, 1, notUTF8), &recoveryv1.AssignKeyResponse{})
		}, codes.Unauthenticated, "CALLER_TOKEN_MISSING", "", ""},
		{"GetKey with a forged marker", func() error {
			return invoke(authed, srv.conn, recoveryv1.RecoveryService_GetKey_FullMethodName, forged, &recoveryv1.GetKeyResponse{})
		}, codes.NotFound, "KEY_NOT_FOUND", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			wantStatus(t, err, tt.code, tt.reason)
			if tt.code != codes.InvalidArgument {
				return
			}
			v := violation(err)
			if v == nil {
				t.Fatalf("no BadRequest violation in %v", err)
			}
			if v.GetField() != tt.field || v.GetReason() != tt.rule {
				t.Errorf("violation field %q reason %q, want %q %q", v.GetField(), v.GetReason(), tt.field, tt.rule)
			}
			wantDescription := map[string]string{
				"PROTO_UTF8": "a string field is not valid UTF-8 (rule proto.utf8)",
				"PROTO_WIRE": "the request is not a valid protobuf encoding of its message (rule proto.wire)",
			}[tt.rule]
			if v.GetDescription() != wantDescription {
				t.Errorf("violation description %q, want %q", v.GetDescription(), wantDescription)
			}
		})
	}

	// Other services are not the codec's business: grpc-go's answer stands.
	badHealth := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), notUTF8)
	err = invoke(ctx, srv.conn, healthpb.Health_Check_FullMethodName, badHealth, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Internal {
		t.Errorf("health with a non-UTF-8 service name = %v, want grpc-go's Internal", err)
	}

	if keys := up.Inspect.Keys(t); len(keys) != 0 {
		t.Errorf("undecodable requests reached the upstream: %+v", keys)
	}
	if backups := up.Inspect.Backups(t); len(backups) != 0 {
		t.Errorf("undecodable requests stored backups: %+v", backups)
	}
	// NOTE: JSON logs would show the bytes as U+FFFD; look for their
	// readable part.
	if strings.Contains(logs.String(), "alice") {
		t.Error("the undecodable request's content reached the logs")
	}
}
