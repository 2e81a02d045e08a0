package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// Ids the idService hands out.
const (
	idsAssignedKey = "0b6f7d2e-1c3a-4e5f-8a9b-0c1d2e3f4a5b"
	idsResolvedKey = "1c7a8e3f-2d4b-4f60-9bac-1d2e3f4a5b6c"
	idsBackup      = "2d8b9f40-3e5c-4a71-8cbd-2e3f4a5b6c7d"
	idsMissingKey  = "3e9ca051-4f6d-4b82-9dce-3f4a5b6c7d8e"
	idsFileKey     = "4fadb162-507e-4c93-aedf-4a5b6c7d8e9f"
)

// idService answers with fixed ids, so the test knows which id each log
// field should show and where it came from.
type idService struct {
	recoveryv1.UnimplementedRecoveryServiceServer
}

func (idService) AssignKey(context.Context, *recoveryv1.AssignKeyRequest) (*recoveryv1.AssignKeyResponse, error) {
	return &recoveryv1.AssignKeyResponse{Key: &recoveryv1.RecoveryKey{KeyId: idsAssignedKey}}, nil
}

func (idService) GetKey(context.Context, *recoveryv1.GetKeyRequest) (*recoveryv1.GetKeyResponse, error) {
	return nil, status.Error(codes.NotFound, "no such key")
}

func (idService) SecureData(context.Context, *recoveryv1.SecureDataRequest) (*recoveryv1.SecureDataResponse, error) {
	return &recoveryv1.SecureDataResponse{Backup: &recoveryv1.Backup{BackupId: idsBackup, KeyId: idsResolvedKey}}, nil
}

func (idService) SecureFile(stream grpc.ClientStreamingServer[recoveryv1.SecureFileRequest, recoveryv1.SecureFileResponse]) error {
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
	}
	// The response names the backup only: the key_id comes from the header.
	return stream.SendAndClose(&recoveryv1.SecureFileResponse{Backup: &recoveryv1.Backup{BackupId: idsBackup}})
}

// startCallFieldsServer serves idService behind logging, the real
// authenticator (knowing walletAPI) and callFields, in the order of
// interceptorChain, and returns a client and the log. level is the logger's.
func startCallFieldsServer(t *testing.T, level slog.Level) (recoveryv1.RecoveryServiceClient, *sandboxtest.LogBuffer) {
	t.Helper()
	callers := writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI)
	logs := &sandboxtest.LogBuffer{Mirror: t.Output()}
	log := NewLogger(logs, level)
	authn, err := auth.New(auth.Config{CallersFile: callers, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	opts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall)}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(loggingUnary(log, opts...), authn.UnaryServerInterceptor(), callFieldsUnary()),
		grpc.ChainStreamInterceptor(loggingStream(log, opts...), authn.StreamServerInterceptor(), callFieldsStream()),
	)
	recoveryv1.RegisterRecoveryServiceServer(srv, idService{})
	return serveInMemory(t, srv), logs
}

// finishedCalls are the "finished call" lines of the log, decoded, in order.
func finishedCalls(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		if rec["msg"] == "finished call" {
			out = append(out, rec)
		}
	}
	return out
}

// TestCallFieldsOnTheFinishLine: each call's one finish line names the
// authenticated caller and the key and backup ids, wherever in the call they
// became known (request, response, stream header), and never a value that is
// not an id.
func TestCallFieldsOnTheFinishLine(t *testing.T) {
	client, logs := startCallFieldsServer(t, slog.LevelInfo)
	authed := withToken(testCtx(t), walletAPI.token)
	const notAnID = "seed phrase pasted into the wrong field"

	type want struct {
		method, code, caller, keyID, backupID string
	}
	tests := []struct {
		name string
		call func() error
		want want
	}{
		{"key id from the response", func() error {
			_, err := client.AssignKey(authed, assignKeyRequest("user-1", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
			return err
		}, want{"AssignKey", "OK", "wallet-api", idsAssignedKey, ""}},
		{"key id from the request of a failed call", func() error {
			_, err := client.GetKey(authed, &recoveryv1.GetKeyRequest{KeyId: idsMissingKey})
			return err
		}, want{"GetKey", "NotFound", "wallet-api", idsMissingKey, ""}},
		{"a value that is not an id is left out", func() error {
			_, err := client.GetKey(authed, &recoveryv1.GetKeyRequest{KeyId: notAnID})
			return err
		}, want{"GetKey", "NotFound", "wallet-api", "", ""}},
		{"ids resolved by the call", func() error {
			_, err := client.SecureData(authed, &recoveryv1.SecureDataRequest{
				Key:     &recoveryv1.SecureDataRequest_PublicKeyHex{PublicKeyHex: strings.Repeat("ab", 40)},
				Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte(notAnID)},
			})
			return err
		}, want{"SecureData", "OK", "wallet-api", idsResolvedKey, idsBackup}},
		{"stream: key id from the header, backup id from the response", func() error {
			_, err := sendFile(authed, client, fileHeader(idsFileKey), []byte(notAnID), []byte(idsMissingKey))
			return err
		}, want{"SecureFile", "OK", "wallet-api", idsFileKey, idsBackup}},
		{"refused before the caller is known", func() error {
			_, err := client.GetKey(testCtx(t), &recoveryv1.GetKeyRequest{KeyId: idsMissingKey})
			return err
		}, want{"GetKey", "Unauthenticated", "", "", ""}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); status.Code(err).String() != tc.want.code {
				t.Fatalf("call returned %v, want code %s", err, tc.want.code)
			}
			lines := finishedCalls(t, logs.String())
			if len(lines) != i+1 {
				t.Fatalf("%d finish lines after %d calls, want one per call", len(lines), i+1)
			}
			line := lines[i]
			got := want{
				method: str(line["grpc.method"]), code: str(line["grpc.code"]),
				caller: str(line[fieldCaller]), keyID: str(line[fieldKeyID]), backupID: str(line[fieldBackupID]),
			}
			if got != tc.want {
				t.Errorf("finish line fields = %+v, want %+v\n%v", got, tc.want, line)
			}
			for _, k := range []string{fieldCaller, fieldKeyID, fieldBackupID} {
				if v, ok := line[k]; ok && v == "" {
					t.Errorf("%s is logged empty; an unknown field must be left out", k)
				}
			}
		})
	}
	if strings.Contains(logs.String(), notAnID) || strings.Contains(logs.String(), walletAPI.token) {
		t.Errorf("the log holds a request value or the token:\n%s", logs.String())
	}
}

// TestFinishLineFollowsLogLevel: --log-level sets which finish lines are
// written; go-grpc-middleware logs OK at info and Internal at error.
func TestFinishLineFollowsLogLevel(t *testing.T) {
	client, logs := startCallFieldsServer(t, slog.LevelWarn)
	authed := withToken(testCtx(t), walletAPI.token)
	if _, err := client.AssignKey(authed, assignKeyRequest("user-1", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.ListKeys(authed, &recoveryv1.ListKeysRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("ListKeys = %v, want Unimplemented", err)
	}
	lines := finishedCalls(t, logs.String())
	if len(lines) != 1 || lines[0]["grpc.method"] != "ListKeys" || lines[0]["level"] != "ERROR" {
		t.Errorf("at --log-level=warn the finish lines are %v, want only ListKeys' (ERROR)", lines)
	}
}

// str is v as a string, "" when absent.
func str(v any) string {
	s, _ := v.(string)
	return s
}
