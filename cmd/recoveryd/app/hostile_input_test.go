package app

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// errorInfoMetadata is the ErrorInfo metadata of err.
func errorInfoMetadata(err error) map[string]string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetMetadata()
		}
	}
	return nil
}

// TestHostileInput sends what an attacker or a broken client would through
// the real server with its default limits: each request is answered with
// the right code, a reason, and the field (a BadRequest violation, or the
// ErrorInfo metadata naming the limit), and none of them stores anything,
// upstream or in the registry.
func TestHostileInput(t *testing.T) {
	log, logs := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	if cfg.MaxFileBytes != defaultMaxFileBytes {
		t.Fatalf("--max-file-bytes %d, want the default %d", cfg.MaxFileBytes, defaultMaxFileBytes)
	}
	srv := startReady(t, cfg, log, Options{})
	ctx := testCtx(t)
	c := srv.client
	key := assignKey(t, ctx, c, "hostile-target")
	keyID := key.GetKeyId()

	assign := func(mutate func(*recoveryv1.AssignKeyRequest)) func() error {
		return func() error {
			req := assignKeyRequest("hostile-user", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)
			mutate(req)
			_, err := c.AssignKey(ctx, req)
			return err
		}
	}
	secureData := func(meta *recoveryv1.BackupMetadata) func() error {
		return func() error {
			req := secureDataByKeyID(keyID, []byte("seed words"))
			req.Metadata = meta
			_, err := c.SecureData(ctx, req)
			return err
		}
	}
	file := func(mutate func(*recoveryv1.SecureFileHeader), chunks ...[]byte) func() error {
		return func() error {
			h := fileHeader(keyID)
			mutate(h.GetHeader())
			_, err := sendFile(ctx, c, h, chunks...)
			return err
		}
	}
	mib := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = bytes.Repeat([]byte{byte('a' + i)}, 1<<20)
		}
		return out
	}
	noChange := func(*recoveryv1.SecureFileHeader) {}
	notUTF8 := []byte("hostile\xc3\x28")

	tests := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
		// field is the BadRequest violation's field, or else the ErrorInfo
		// metadata key that names what was wrong; "" when the transport
		// refused the call before recoveryd's code saw it.
		field string
	}{
		{"1 MiB user_identifier", assign(func(r *recoveryv1.AssignKeyRequest) { r.UserIdentifier = strings.Repeat("u", 1<<20) }),
			codes.InvalidArgument, "INVALID_REQUEST", "user_identifier"},
		{"NUL in user_identifier", assign(func(r *recoveryv1.AssignKeyRequest) { r.UserIdentifier = "ali\x00ce" }),
			codes.InvalidArgument, "INVALID_REQUEST", "user_identifier"},
		{"escape sequence in customer_name", assign(func(r *recoveryv1.AssignKeyRequest) { r.Organisation.CustomerName = "Acme\x1b[2J" }),
			codes.InvalidArgument, "INVALID_REQUEST", "organisation.customer_name"},
		{"newline in package_id", assign(func(r *recoveryv1.AssignKeyRequest) { r.Package.PackageId = "gold\nFAKE LOG LINE" }),
			codes.InvalidArgument, "INVALID_REQUEST", "package.package_id"},
		{"user_identifier not UTF-8", func() error {
			req := assignKeyRequest("", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)
			return invoke(ctx, srv.conn, recoveryv1.RecoveryService_AssignKey_FullMethodName, withField(t, req, 1, notUTF8), &recoveryv1.AssignKeyResponse{})
		}, codes.InvalidArgument, "INVALID_REQUEST", "user_identifier"},
		{"1025-character description", secureData(&recoveryv1.BackupMetadata{Description: strings.Repeat("d", 1025)}),
			codes.InvalidArgument, "INVALID_REQUEST", "metadata.description"},
		{"control character in description", secureData(&recoveryv1.BackupMetadata{Description: "ok\x07"}),
			codes.InvalidArgument, "INVALID_REQUEST", "metadata.description"},
		{"filename with a directory", secureData(&recoveryv1.BackupMetadata{OriginalFilename: "../../etc/shadow"}),
			codes.InvalidArgument, "INVALID_REQUEST", "metadata.original_filename"},
		{"filename with a backslash", secureData(&recoveryv1.BackupMetadata{OriginalFilename: `C:\secrets.txt`}),
			codes.InvalidArgument, "INVALID_REQUEST", "metadata.original_filename"},
		{"junk content_type", secureData(&recoveryv1.BackupMetadata{ContentType: "<script>alert(1)</script>"}),
			codes.InvalidArgument, "INVALID_REQUEST", "metadata.content_type"},
		{"129-character content_type", secureData(&recoveryv1.BackupMetadata{ContentType: "text/" + strings.Repeat("x", 124)}),
			codes.InvalidArgument, "INVALID_REQUEST", "metadata.content_type"},
		{"negative size_bytes", file(func(h *recoveryv1.SecureFileHeader) { h.SizeBytes = proto.Int64(-1) }, []byte("bytes")),
			codes.InvalidArgument, "INVALID_REQUEST", "header.size_bytes"},
		{"size_bytes larger than the stream", file(func(h *recoveryv1.SecureFileHeader) { h.SizeBytes = proto.Int64(1000) }, []byte("only ten b")),
			codes.InvalidArgument, "SIZE_MISMATCH", "declared_size_bytes"},
		{"size_bytes smaller than the stream", file(func(h *recoveryv1.SecureFileHeader) { h.SizeBytes = proto.Int64(5) }, []byte("ten bytes!")),
			codes.InvalidArgument, "SIZE_MISMATCH", "declared_size_bytes"},
		{"size_bytes over the limit", file(func(h *recoveryv1.SecureFileHeader) { h.SizeBytes = proto.Int64(1 << 40) }, []byte("x")),
			codes.ResourceExhausted, "FILE_TOO_LARGE", "max_bytes"},
		{"a 2 MiB + 1 message", file(noChange, make([]byte, maxRecvMsgBytes+1)),
			codes.ResourceExhausted, "", ""},
		{"an 11 MiB stream", file(noChange, mib(11)...),
			codes.ResourceExhausted, "FILE_TOO_LARGE", "max_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			wantStatus(t, err, tt.code, tt.reason)
			if tt.field == "" {
				return
			}
			_, fields := errorDetails(err)
			if _, inMetadata := errorInfoMetadata(err)[tt.field]; !inMetadata && !(len(fields) > 0 && fields[0] == tt.field) {
				t.Errorf("%v names neither field %q (violations %q) nor metadata %q (%v)", err, tt.field, fields, tt.field, errorInfoMetadata(err))
			}
		})
	}

	// Nothing was stored anywhere: the upstream still holds only the one
	// key and no backup, and the registry agrees.
	wantOnlyKey(t, ctx, up, c, keyID)
	for _, leaked := range []string{strings.Repeat("u", 256), "FAKE LOG LINE", "alert(1)", strings.Repeat("a", 256)} {
		if strings.Contains(logs.String(), leaked) {
			t.Errorf("hostile input %.20q reached the logs", leaked)
		}
	}
}
