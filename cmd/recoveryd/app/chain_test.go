package app

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// panickingService panics in every handler it implements.
type panickingService struct {
	recoveryv1.UnimplementedRecoveryServiceServer
}

func (panickingService) GetKey(context.Context, *recoveryv1.GetKeyRequest) (*recoveryv1.GetKeyResponse, error) {
	panic("handler bug: secret-free but loud")
}

// SecureFile receives the header first, as every stream handler does:
// validation runs on each received message, so a malformed header ends the
// call there, before the panic.
func (panickingService) SecureFile(stream grpc.ClientStreamingServer[recoveryv1.SecureFileRequest, recoveryv1.SecureFileResponse]) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	panic("stream handler bug")
}

// chainServer serves panickingService through the real server builder
// with caller authentication on (walletAPI is the one caller), and returns
// a client and the server's log.
func chainServer(t *testing.T) (recoveryv1.RecoveryServiceClient, *sandboxtest.LogBuffer) {
	t.Helper()
	return chainServerLimited(t, overloadLimits{}, walletAPI)
}

// chainServerLimited is chainServer with default overload limits and the
// given callers.
func chainServerLimited(t *testing.T, limits overloadLimits, callers ...testCaller) (recoveryv1.RecoveryServiceClient, *sandboxtest.LogBuffer) {
	t.Helper()
	return chainServerFor(t, panickingService{}, limits, callers...)
}

// chainServerFor is chainServerLimited serving svc.
func chainServerFor(t *testing.T, svc recoveryv1.RecoveryServiceServer, limits overloadLimits, callers ...testCaller) (recoveryv1.RecoveryServiceClient, *sandboxtest.LogBuffer) {
	t.Helper()
	log, logs := newTestLogger(t)
	cfg := DefaultConfig()
	cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), callers...)
	authn, stopWatch, err := newAuthenticator(t.Context(), cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopWatch)
	srv, err := newGRPCServer(log, svc, newHealthService(), service.StatusFromValidation, serverSecurity{authn: authn}, limits, nil)
	if err != nil {
		t.Fatal(err)
	}
	return serveInMemory(t, srv), logs
}

// TestChainPositions: what each position of the interceptor chain must do,
// shown by behaviour through the built server, for unary and streaming
// calls alike (so the two chains cannot drift apart). The handlers panic, so
// any call that reaches one answers a bare Internal.
func TestChainPositions(t *testing.T) {
	const validKeyID = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"
	calls := map[string]func(ctx context.Context, c recoveryv1.RecoveryServiceClient, keyID string) error{
		"unary": func(ctx context.Context, c recoveryv1.RecoveryServiceClient, keyID string) error {
			_, err := c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: keyID})
			return err
		},
		"stream": func(ctx context.Context, c recoveryv1.RecoveryServiceClient, keyID string) error {
			_, err := sendFile(ctx, c, fileHeader(keyID), []byte("x"))
			return err
		},
	}
	tests := []struct {
		position string
		// token is the caller's bearer token ("": none).
		token string
		keyID string
		code  codes.Code
		// reason is the ErrorInfo reason; "" for a bare status.
		reason string
		// logged is what the call's finish line must hold.
		logged []string
		// limits are the server's default overload limits; when set, one
		// call with a valid key_id spends the caller's only token first.
		limits overloadLimits
		// beforeChain: the call is refused from its headers (the auth tap,
		// InTapHandle) before the chain runs, so no finished-call line; the
		// auth package logs the refusal.
		beforeChain bool
	}{
		{position: "auth before validation: an unauthenticated caller learns nothing of the request rules",
			keyID: "bad", code: codes.Unauthenticated, reason: "CALLER_TOKEN_MISSING",
			logged: []string{`"msg":"caller refused"`, `"reason":"CALLER_TOKEN_MISSING"`}, beforeChain: true},
		{position: "validation before the handler: a malformed request never reaches it",
			token: walletAPI.token, keyID: "bad", code: codes.InvalidArgument, reason: "INVALID_REQUEST",
			logged: []string{`"grpc.code":"InvalidArgument"`}},
		{position: "callFields between auth and validation: a refused call's line names its caller",
			token: walletAPI.token, keyID: "bad", code: codes.InvalidArgument, reason: "INVALID_REQUEST",
			logged: []string{`"caller":"` + walletAPI.name + `"`}},
		{position: "rateLimit between callFields and validation: a caller over its rate is refused by name, before the request rules",
			token: walletAPI.token, keyID: "bad", code: codes.ResourceExhausted, reason: "RATE_LIMITED",
			logged: []string{`"grpc.code":"ResourceExhausted"`, `"caller":"` + walletAPI.name + `"`},
			limits: oneCallPerMonth},
		{position: "recovery innermost: a panic is a bare Internal that logging still records",
			token: walletAPI.token, keyID: validKeyID, code: codes.Internal,
			logged: []string{`"grpc.code":"Internal"`}},
	}
	for _, tt := range tests {
		for kind, call := range calls {
			t.Run(kind+"/"+tt.position, func(t *testing.T) {
				c, logs := chainServerLimited(t, tt.limits, walletAPI)
				ctx := testCtx(t)
				if tt.token != "" {
					ctx = withToken(ctx, tt.token)
				}
				calls := 1
				if tt.limits != (overloadLimits{}) {
					if err := call(ctx, c, validKeyID); status.Code(err) != codes.Internal {
						t.Fatalf("the call spending the only token answered %v, want the handler's Internal", err)
					}
					calls++
				}
				err := call(ctx, c, tt.keyID)
				if tt.reason != "" {
					wantStatus(t, err, tt.code, tt.reason)
				} else if st, _ := status.FromError(err); st.Code() != tt.code || st.Message() != internalMessage || len(st.Details()) != 0 {
					t.Fatalf("answered %v (details %v), want bare %s %q", err, st.Details(), tt.code, internalMessage)
				}
				// logging is outermost: one finish line per call, with the
				// final code whichever position answered.
				out := logs.String()
				if tt.beforeChain {
					calls--
				}
				if n := strings.Count(out, `"msg":"finished call"`); n != calls {
					t.Fatalf("%d finished-call lines, want %d:\n%s", n, calls, out)
				}
				// The line to check is the last call's.
				if !tt.beforeChain {
					out = out[strings.LastIndex(out, `"msg":"finished call"`):]
				}
				for _, want := range tt.logged {
					if !strings.Contains(out, want) {
						t.Errorf("log lacks %s:\n%s", want, out)
					}
				}
			})
		}
	}
}

// oneCallPerMonth lets a caller one call, then refuses it for weeks: long
// enough that no test can see a token come back.
var oneCallPerMonth = overloadLimits{rate: 1.0 / (30 * 24 * 3600), burst: 1}

// TestPanicIsLoggedWithItsStack: recovery logs the panic value and where it
// happened; the caller saw only a bare Internal (TestChainPositions).
func TestPanicIsLoggedWithItsStack(t *testing.T) {
	c, logs := chainServer(t)
	ctx := withToken(testCtx(t), walletAPI.token)
	_, _ = c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"})
	_, _ = sendFile(ctx, c, fileHeader("6f1c2d3e-4a5b-4c6d-8e7f-901234567890"), []byte("x"))
	out := logs.String()
	for _, want := range []string{
		`"msg":"handler panicked","panic":"handler bug: secret-free but loud"`,
		`"msg":"handler panicked","panic":"stream handler bug"`,
		"chain_test.go", // the stack names where the panic happened
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}
