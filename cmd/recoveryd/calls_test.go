package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// Request terms of the process tests.
const (
	testCustomerID   = "acme-wallets"
	testCustomerName = "Acme Wallets Ltd"
	testPackageID    = "pkg-gold"
	testPackageName  = "Gold recovery"
	// fileChunkBytes is each SecureFile chunk: well above any minimum
	// chunk size, below the 1 MiB message limit.
	fileChunkBytes = 64 << 10
)

func assignRequest(user string) *recoveryv1.AssignKeyRequest {
	return &recoveryv1.AssignKeyRequest{
		UserIdentifier: user,
		KeyEnvironment: recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT,
		Organisation:   &recoveryv1.Organisation{CustomerId: testCustomerID, CustomerName: testCustomerName},
		Package:        &recoveryv1.Package{PackageId: testPackageID, PackageName: testPackageName},
	}
}

func dataRequest(keyID, idempotencyKey string, plaintext []byte) *recoveryv1.SecureDataRequest {
	return &recoveryv1.SecureDataRequest{
		Key:            &recoveryv1.SecureDataRequest_KeyId{KeyId: keyID},
		Payload:        &recoveryv1.SecureDataRequest_Plaintext{Plaintext: plaintext},
		Metadata:       &recoveryv1.BackupMetadata{Description: "seed phrase", ContentType: "text/plain"},
		IdempotencyKey: idempotencyKey,
	}
}

// sendFile uploads content in fileChunkBytes chunks, with its digest and
// idempotencyKey in the header.
func sendFile(ctx context.Context, c recoveryv1.RecoveryServiceClient, keyID, idempotencyKey string, content []byte) (*recoveryv1.SecureFileResponse, error) {
	stream, err := c.SecureFile(ctx)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(content)
	size := int64(len(content))
	msgs := []*recoveryv1.SecureFileRequest{{Msg: &recoveryv1.SecureFileRequest_Header{Header: &recoveryv1.SecureFileHeader{
		Key:            &recoveryv1.SecureFileHeader_KeyId{KeyId: keyID},
		Metadata:       &recoveryv1.BackupMetadata{Description: "key share", ContentType: "application/octet-stream"},
		SizeBytes:      &size,
		Sha256:         hex.EncodeToString(sum[:]),
		IdempotencyKey: idempotencyKey,
	}}}}
	for rest := content; len(rest) > 0; {
		n := min(len(rest), fileChunkBytes)
		msgs = append(msgs, &recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Chunk{Chunk: rest[:n]}})
		rest = rest[n:]
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break // the server ended the call early: CloseAndRecv has why
		}
	}
	return stream.CloseAndRecv()
}

// callKind is one of the operations the mixed load runs.
type callKind string

const (
	callAssign callKind = "AssignKey"
	callData   callKind = "SecureData"
	callFile   callKind = "SecureFile"
)

// call is one call of a mixed load: what was asked, and what came back.
type call struct {
	kind callKind
	// user is the new pair's user_identifier (AssignKey).
	user string
	// idempotencyKey of a store, which a retry repeats.
	idempotencyKey string
	// content is what a store sent (the plaintext, or the file).
	content []byte
	err     error
	// id is the key_id (AssignKey) or backup_id (stores) of an OK answer.
	id string
}

// mix says how many calls of each kind runMixed starts.
type mix struct{ assign, data, files int }

func (m mix) total() int { return m.assign + m.data + m.files }

// runMixed starts m's calls (new pairs named prefix-N, stores to keyID
// with idempotency keys prefix-N), at most workers at once (0: all at
// once), interleaving the kinds, and returns a function that waits for
// them all and returns them.
func runMixed(ctx context.Context, c recoveryv1.RecoveryServiceClient, keyID, prefix string, m mix, workers int) func() []*call {
	var calls []*call
	for i := range m.assign {
		calls = append(calls, &call{kind: callAssign, user: fmt.Sprintf("%s-user-%d", prefix, i)})
	}
	for i := range m.data {
		calls = append(calls, &call{kind: callData, idempotencyKey: fmt.Sprintf("%s-data-%d", prefix, i),
			content: fmt.Appendf(nil, "%s secret %d", prefix, i)})
	}
	for i := range m.files {
		calls = append(calls, &call{kind: callFile, idempotencyKey: fmt.Sprintf("%s-file-%d", prefix, i),
			content: bytes.Repeat([]byte{byte(i + 1)}, 3*fileChunkBytes)})
	}
	// Interleaved, so that every kind is under way at any moment.
	order := slices.Clone(calls)
	slices.SortStableFunc(order, func(a, b *call) int { return cmp.Compare(a.index(), b.index()) })
	if workers <= 0 {
		workers = len(calls)
	}
	slots := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for _, cl := range order {
		wg.Go(func() {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				cl.err = ctx.Err()
				return
			}
			defer func() { <-slots }()
			cl.run(ctx, c, keyID)
		})
	}
	return func() []*call {
		wg.Wait()
		return calls
	}
}

// index is the call's number within its kind.
func (cl *call) index() int {
	name := cl.user + cl.idempotencyKey
	n, _ := strconv.Atoi(name[strings.LastIndexByte(name, '-')+1:])
	return n
}

// run makes the call once.
func (cl *call) run(ctx context.Context, c recoveryv1.RecoveryServiceClient, keyID string) {
	switch cl.kind {
	case callAssign:
		resp, err := c.AssignKey(ctx, assignRequest(cl.user))
		cl.err, cl.id = err, resp.GetKey().GetKeyId()
	case callData:
		resp, err := c.SecureData(ctx, dataRequest(keyID, cl.idempotencyKey, cl.content))
		cl.err, cl.id = err, resp.GetBackup().GetBackupId()
	case callFile:
		resp, err := sendFile(ctx, c, keyID, cl.idempotencyKey, cl.content)
		cl.err, cl.id = err, resp.GetBackup().GetBackupId()
	}
}

func (cl *call) String() string {
	name := string(cl.kind) + " " + cl.user + cl.idempotencyKey
	if cl.err != nil {
		return fmt.Sprintf("%s: %s %s", name, status.Code(cl.err), reasonOf(cl.err))
	}
	return name + ": OK " + cl.id
}

// reasonOf is the ErrorInfo reason of err, "" when it has none (a status
// the transport made, not the service).
func reasonOf(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// assignOne assigns a key for user and fails the test on error.
func assignOne(t *testing.T, ctx context.Context, c recoveryv1.RecoveryServiceClient, user string) *recoveryv1.RecoveryKey {
	t.Helper()
	resp, err := c.AssignKey(ctx, assignRequest(user))
	if err != nil {
		t.Fatalf("AssignKey(%s): %v", user, err)
	}
	return resp.GetKey()
}
