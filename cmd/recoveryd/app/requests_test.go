package app

import (
	"context"
	"testing"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// Request builders shared by the end-to-end tests.

const (
	testCustomerID   = "acme-wallets"
	testCustomerName = "Acme Wallets Ltd"
	testPackageID    = "pkg-gold"
	testPackageName  = "Gold recovery"
)

func assignKeyRequest(user string, env recoveryv1.KeyEnvironment) *recoveryv1.AssignKeyRequest {
	return &recoveryv1.AssignKeyRequest{
		UserIdentifier: user,
		KeyEnvironment: env,
		Organisation:   &recoveryv1.Organisation{CustomerId: testCustomerID, CustomerName: testCustomerName},
		Package:        &recoveryv1.Package{PackageId: testPackageID, PackageName: testPackageName},
	}
}

func secureDataByKeyID(keyID string, plaintext []byte) *recoveryv1.SecureDataRequest {
	return &recoveryv1.SecureDataRequest{
		Key:      &recoveryv1.SecureDataRequest_KeyId{KeyId: keyID},
		Payload:  &recoveryv1.SecureDataRequest_Plaintext{Plaintext: plaintext},
		Metadata: &recoveryv1.BackupMetadata{Description: "seed phrase", ContentType: "text/plain"},
	}
}

func fileHeader(keyID string) *recoveryv1.SecureFileRequest {
	return &recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Header{Header: &recoveryv1.SecureFileHeader{
		Key:      &recoveryv1.SecureFileHeader_KeyId{KeyId: keyID},
		Metadata: &recoveryv1.BackupMetadata{Description: "key share backup", ContentType: "application/octet-stream", OriginalFilename: "share.bin"},
	}}}
}

func fileChunk(b []byte) *recoveryv1.SecureFileRequest {
	return &recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Chunk{Chunk: b}}
}

// assignKey assigns a key and fails the test on error.
func assignKey(t *testing.T, ctx context.Context, c recoveryv1.RecoveryServiceClient, user string) *recoveryv1.RecoveryKey {
	t.Helper()
	resp, err := c.AssignKey(ctx, assignKeyRequest(user, recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	if err != nil {
		t.Fatalf("AssignKey(%s): %v", user, err)
	}
	return resp.GetKey()
}

// sendFile streams header then chunks and returns the response.
func sendFile(ctx context.Context, c recoveryv1.RecoveryServiceClient, header *recoveryv1.SecureFileRequest, chunks ...[]byte) (*recoveryv1.SecureFileResponse, error) {
	stream, err := c.SecureFile(ctx)
	if err != nil {
		return nil, err
	}
	msgs := append([]*recoveryv1.SecureFileRequest{header}, make([]*recoveryv1.SecureFileRequest, 0, len(chunks))...)
	for _, ch := range chunks {
		msgs = append(msgs, fileChunk(ch))
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			// The server ended the call early; CloseAndRecv has its status.
			break
		}
	}
	return stream.CloseAndRecv()
}
