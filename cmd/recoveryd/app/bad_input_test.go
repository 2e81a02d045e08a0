package app

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// testMaxFileBytes is the --max-file-bytes of the bad-input server: small,
// so the over-limit row needs little data.
const testMaxFileBytes = 256 << 10

// TestBadInput sends every kind of bad request through the real server and
// checks the code, the ErrorInfo reason and the BadRequest field names, and
// that none of them changed anything, upstream or in the registry.
func TestBadInput(t *testing.T) {
	log, logs := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.MaxFileBytes = testMaxFileBytes
	srv := startReady(t, cfg, log, Options{})
	ctx := testCtx(t)
	c := srv.client

	key := assignKey(t, ctx, c, "user-1")
	keyID := key.GetKeyId()
	unknownKeyID := "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"
	plaintext := func(n int) []byte { return bytes.Repeat([]byte{'s'}, n) }
	secureData := func(mutate func(*recoveryv1.SecureDataRequest)) func() error {
		return func() error {
			req := secureDataByKeyID(keyID, plaintext(32))
			mutate(req)
			_, err := c.SecureData(ctx, req)
			return err
		}
	}
	assign := func(mutate func(*recoveryv1.AssignKeyRequest)) func() error {
		return func() error {
			req := assignKeyRequest("user-2", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)
			mutate(req)
			_, err := c.AssignKey(ctx, req)
			return err
		}
	}
	file := func(mutateHeader func(*recoveryv1.SecureFileHeader), chunks ...[]byte) func() error {
		return func() error {
			h := fileHeader(keyID)
			mutateHeader(h.GetHeader())
			_, err := sendFile(ctx, c, h, chunks...)
			return err
		}
	}
	noChange := func(*recoveryv1.SecureFileHeader) {}
	validSealed := func() *recoveryv1.SealedPayload {
		pub, err := keycrypto.ParsePublicKeyHex(key.GetPublicKeyHex())
		if err != nil {
			t.Fatal(err)
		}
		ct, err := keycrypto.Encrypt(nil, pub, []byte("sealed"))
		if err != nil {
			t.Fatal(err)
		}
		return &recoveryv1.SealedPayload{Ciphertext: ct, ChecksumSha256: keycrypto.Checksum([]byte("sealed"))}
	}

	tests := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
		fields []string // nil: not checked
	}{
		{"AssignKey without organisation", assign(func(r *recoveryv1.AssignKeyRequest) { r.Organisation = nil }),
			codes.InvalidArgument, "INVALID_REQUEST", []string{"organisation"}},
		{"AssignKey with UNSPECIFIED environment", assign(func(r *recoveryv1.AssignKeyRequest) {
			r.KeyEnvironment = recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_UNSPECIFIED
		}),
			codes.InvalidArgument, "INVALID_REQUEST", []string{"key_environment"}},
		{"AssignKey with undefined environment", assign(func(r *recoveryv1.AssignKeyRequest) { r.KeyEnvironment = 7 }),
			codes.InvalidArgument, "INVALID_REQUEST", []string{"key_environment"}},
		{"AssignKey with a bad customer_id and no package", assign(func(r *recoveryv1.AssignKeyRequest) {
			r.Organisation.CustomerId, r.Package = "-acme", nil
		}), codes.InvalidArgument, "INVALID_REQUEST", []string{"organisation.customer_id", "package"}},
		{"AssignKey with an empty user", assign(func(r *recoveryv1.AssignKeyRequest) { r.UserIdentifier = "" }),
			codes.InvalidArgument, "INVALID_REQUEST", []string{"user_identifier"}},
		{"GetKey with a bad uuid", func() error {
			_, err := c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: "not-a-uuid"})
			return err
		}, codes.InvalidArgument, "INVALID_REQUEST", []string{"key_id"}},
		{"GetKey of an unknown key", func() error {
			_, err := c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: unknownKeyID})
			return err
		}, codes.NotFound, "KEY_NOT_FOUND", nil},
		{"SecureData with 447 bytes of plaintext", secureData(func(r *recoveryv1.SecureDataRequest) {
			r.Payload = &recoveryv1.SecureDataRequest_Plaintext{Plaintext: plaintext(keycrypto.MaxPlaintextLen + 1)}
		}), codes.InvalidArgument, "PLAINTEXT_TOO_LARGE", []string{"plaintext"}},
		{"SecureData with empty plaintext", secureData(func(r *recoveryv1.SecureDataRequest) {
			r.Payload = &recoveryv1.SecureDataRequest_Plaintext{Plaintext: nil}
		}), codes.InvalidArgument, "INVALID_REQUEST", []string{"plaintext"}},
		{"SecureData with a bad uuid", secureData(func(r *recoveryv1.SecureDataRequest) {
			r.Key = &recoveryv1.SecureDataRequest_KeyId{KeyId: "1234"}
		}), codes.InvalidArgument, "INVALID_REQUEST", []string{"key_id"}},
		{"SecureData with no key", secureData(func(r *recoveryv1.SecureDataRequest) { r.Key = nil }),
			codes.InvalidArgument, "INVALID_REQUEST", []string{"key"}},
		{"SecureData with non-hex public key", secureData(func(r *recoveryv1.SecureDataRequest) {
			r.Key = &recoveryv1.SecureDataRequest_PublicKeyHex{PublicKeyHex: strings.Repeat("zz", 40)}
		}), codes.InvalidArgument, "INVALID_REQUEST", []string{"public_key_hex"}},
		{"SecureData to an unknown key", secureData(func(r *recoveryv1.SecureDataRequest) {
			r.Key = &recoveryv1.SecureDataRequest_KeyId{KeyId: unknownKeyID}
		}), codes.NotFound, "KEY_NOT_FOUND", nil},
		{"SecureData sealed with a bad checksum pattern", secureData(func(r *recoveryv1.SecureDataRequest) {
			s := validSealed()
			s.ChecksumSha256 = "sha256:" + s.ChecksumSha256[7:]
			r.Payload = &recoveryv1.SecureDataRequest_Sealed{Sealed: s}
		}), codes.InvalidArgument, "INVALID_REQUEST", []string{"sealed.checksum_sha256"}},
		{"SecureData sealed with a short ciphertext", secureData(func(r *recoveryv1.SecureDataRequest) {
			s := validSealed()
			s.Ciphertext = s.Ciphertext[:256]
			r.Payload = &recoveryv1.SecureDataRequest_Sealed{Sealed: s}
		}), codes.InvalidArgument, "INVALID_REQUEST", []string{"sealed.ciphertext"}},
		{"SecureData sealed with the checksum of the ciphertext", secureData(func(r *recoveryv1.SecureDataRequest) {
			s := validSealed()
			s.ChecksumSha256 = keycrypto.Checksum(s.Ciphertext)
			r.Payload = &recoveryv1.SecureDataRequest_Sealed{Sealed: s}
		}), codes.InvalidArgument, "UPSTREAM_REJECTED_REQUEST", nil},
		{"SecureData with bad metadata", secureData(func(r *recoveryv1.SecureDataRequest) {
			r.Metadata = &recoveryv1.BackupMetadata{Description: "bell\x07", ContentType: "text plain", OriginalFilename: "../etc/passwd"}
		}), codes.InvalidArgument, "INVALID_REQUEST", []string{"metadata.description", "metadata.content_type", "metadata.original_filename"}},
		// Unicode control (Cc) and format (Cf) characters in free text: a
		// bidi override or a zero-width character lets one name display as
		// another.
		{"AssignKey with a bidi override in customer_name", assign(func(r *recoveryv1.AssignKeyRequest) {
			r.Organisation.CustomerName = "Acme \u202egnp.exe"
		}), codes.InvalidArgument, "INVALID_REQUEST", []string{"organisation.customer_name"}},
		{"AssignKey with a zero-width space in package_name", assign(func(r *recoveryv1.AssignKeyRequest) {
			r.Package.PackageName = "Gold\u200b"
		}), codes.InvalidArgument, "INVALID_REQUEST", []string{"package.package_name"}},
		{"AssignKey with a C1 control in customer_name", assign(func(r *recoveryv1.AssignKeyRequest) {
			r.Organisation.CustomerName = "Acme\u0085Wallets"
		}), codes.InvalidArgument, "INVALID_REQUEST", []string{"organisation.customer_name"}},
		{"SecureData with format characters in metadata", secureData(func(r *recoveryv1.SecureDataRequest) {
			r.Metadata = &recoveryv1.BackupMetadata{Description: "seed\u2066 phrase", OriginalFilename: "seed\u200d.txt"}
		}), codes.InvalidArgument, "INVALID_REQUEST", []string{"metadata.description", "metadata.original_filename"}},
		{"SecureData with a C1 control in the description", secureData(func(r *recoveryv1.SecureDataRequest) {
			r.Metadata = &recoveryv1.BackupMetadata{Description: "next\u0085line"}
		}), codes.InvalidArgument, "INVALID_REQUEST", []string{"metadata.description"}},
		{"SecureFile with a byte order mark in the header's description", file(func(h *recoveryv1.SecureFileHeader) {
			h.Metadata.Description = "\ufeffwallet"
		}, plaintext(10)), codes.InvalidArgument, "INVALID_REQUEST", []string{"header.metadata.description"}},
		{"SecureData with a non-ASCII idempotency key", secureData(func(r *recoveryv1.SecureDataRequest) { r.IdempotencyKey = "clé" }),
			codes.InvalidArgument, "INVALID_REQUEST", []string{"idempotency_key"}},
		{"SecureFile with an oversize chunk", file(noChange, plaintext(1<<20+1)),
			codes.InvalidArgument, "INVALID_REQUEST", []string{"chunk"}},
		{"SecureFile with an empty chunk", file(noChange, plaintext(10), []byte{}),
			codes.InvalidArgument, "INVALID_REQUEST", []string{"chunk"}},
		{"SecureFile with a message over the server's limit", file(noChange, plaintext(maxRecvMsgBytes+1)),
			codes.ResourceExhausted, "", nil},
		{"SecureFile with bad header metadata", file(func(h *recoveryv1.SecureFileHeader) {
			h.Metadata.OriginalFilename = "dir/share.bin"
		}, plaintext(10)), codes.InvalidArgument, "INVALID_REQUEST", []string{"header.metadata.original_filename"}},
		{"SecureFile with a bad header uuid", file(func(h *recoveryv1.SecureFileHeader) {
			h.Key = &recoveryv1.SecureFileHeader_KeyId{KeyId: "nope"}
		}, plaintext(10)), codes.InvalidArgument, "INVALID_REQUEST", []string{"header.key_id"}},
		{"SecureFile with a bad sha256", file(func(h *recoveryv1.SecureFileHeader) { h.Sha256 = "abc" }, plaintext(10)),
			codes.InvalidArgument, "INVALID_REQUEST", []string{"header.sha256"}},
		{"SecureFile declaring zero bytes", file(func(h *recoveryv1.SecureFileHeader) { h.SizeBytes = proto.Int64(0) }, plaintext(10)),
			codes.InvalidArgument, "INVALID_REQUEST", []string{"header.size_bytes"}},
		{"SecureFile starting with a chunk", func() error {
			_, err := sendFile(ctx, c, fileChunk(plaintext(10)), plaintext(10))
			return err
		}, codes.InvalidArgument, "STREAM_OUT_OF_ORDER", nil},
		{"SecureFile with a second header", func() error {
			stream, err := c.SecureFile(ctx)
			if err != nil {
				return err
			}
			for _, m := range []*recoveryv1.SecureFileRequest{fileHeader(keyID), fileChunk(plaintext(10)), fileHeader(keyID)} {
				if stream.Send(m) != nil {
					break
				}
			}
			_, err = stream.CloseAndRecv()
			return err
		}, codes.InvalidArgument, "STREAM_OUT_OF_ORDER", nil},
		{"SecureFile with no bytes", file(noChange), codes.InvalidArgument, "EMPTY_FILE", nil},
		{"SecureFile over --max-file-bytes", file(noChange, plaintext(200<<10), plaintext(200<<10)),
			codes.ResourceExhausted, "FILE_TOO_LARGE", nil},
		{"SecureFile declaring more than --max-file-bytes", file(func(h *recoveryv1.SecureFileHeader) {
			h.SizeBytes = proto.Int64(testMaxFileBytes + 1)
		}, plaintext(10)), codes.ResourceExhausted, "FILE_TOO_LARGE", nil},
		{"SecureFile not matching its declared sha256", file(func(h *recoveryv1.SecureFileHeader) {
			h.Sha256 = keycrypto.Checksum([]byte("other bytes"))
		}, plaintext(service.MinChunkBytes), plaintext(100)), codes.InvalidArgument, "DIGEST_MISMATCH", nil},
		{"SecureFile not matching its declared size", file(func(h *recoveryv1.SecureFileHeader) { h.SizeBytes = proto.Int64(service.MinChunkBytes + 50) },
			plaintext(service.MinChunkBytes), plaintext(100)), codes.InvalidArgument, "SIZE_MISMATCH", nil},
		{"SecureFile to an unknown key", file(func(h *recoveryv1.SecureFileHeader) {
			h.Key = &recoveryv1.SecureFileHeader_KeyId{KeyId: unknownKeyID}
		}, plaintext(10)), codes.NotFound, "KEY_NOT_FOUND", nil},
		{"ListKeys with too large a page", func() error {
			_, err := c.ListKeys(ctx, &recoveryv1.ListKeysRequest{PageSize: 501})
			return err
		}, codes.InvalidArgument, "INVALID_REQUEST", []string{"page_size"}},
		{"ListKeys with a forged page token", func() error {
			_, err := c.ListKeys(ctx, &recoveryv1.ListKeysRequest{PageToken: "forged"})
			return err
		}, codes.InvalidArgument, "INVALID_PAGE_TOKEN", nil},
		{"ListBackups with a bad key id", func() error {
			_, err := c.ListBackups(ctx, &recoveryv1.ListBackupsRequest{KeyId: "xyz"})
			return err
		}, codes.InvalidArgument, "INVALID_REQUEST", []string{"key_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantStatus(t, tt.call(), tt.code, tt.reason, tt.fields...)
		})
	}

	// Nothing changed: the upstream holds the one key and no backup, and
	// the registry agrees.
	wantOnlyKey(t, ctx, up, c, keyID)
	if strings.Contains(logs.String(), strings.Repeat("s", 64)) {
		t.Error("request bytes reached the logs")
	}
	// Bad input is the caller's fault: none of it is logged or counted as
	// a fault of this service (a SecureFile chunk refused by validation
	// arrives at the handler through stream.Recv).
	if strings.Contains(logs.String(), `"reason":"INTERNAL"`) {
		t.Error("bad input was reported as an INTERNAL failure")
	}
}

// wantOnlyKey checks that nothing but the one key keyID was stored: the
// upstream holds that key and no backup, and the registry agrees.
func wantOnlyKey(t *testing.T, ctx context.Context, up *sandboxtest.Sandbox, c recoveryv1.RecoveryServiceClient, keyID string) {
	t.Helper()
	if keys := up.Inspect.Keys(t); len(keys) != 1 || keys[0].KeyID != keyID {
		t.Errorf("upstream keys = %+v, want only %s", keys, keyID)
	}
	if backups := up.Inspect.Backups(t); len(backups) != 0 {
		t.Errorf("upstream stored %d backups: %+v", len(backups), backups)
	}
	keys, err := c.ListKeys(ctx, &recoveryv1.ListKeysRequest{})
	if err != nil || len(keys.GetKeys()) != 1 || keys.GetKeys()[0].GetKeyId() != keyID {
		t.Errorf("ListKeys = %v, %v; want only %s", keys, err, keyID)
	}
	backups, err := c.ListBackups(ctx, &recoveryv1.ListBackupsRequest{})
	if err != nil || len(backups.GetBackups()) != 0 {
		t.Errorf("ListBackups = %v, %v; want none", backups, err)
	}
}
