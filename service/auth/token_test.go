package auth_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

func TestBearerTokens(t *testing.T) {
	logs := &sandboxtest.LogBuffer{}
	a := newAuthenticator(t, auth.Config{}, logs)
	conn := dial(t, startServer(t, a, nil), nil)
	tests := []struct {
		name       string
		header     []string
		wantReason recoveryv1.ErrorReason // ERROR_REASON_UNSPECIFIED = authenticated
		wantCaller string
		wantOrgs   string
	}{
		{"no authorization metadata", nil, auth.ReasonTokenMissing, "", ""},
		{"right token", []string{"Bearer " + tokenWalletAPI}, 0, "wallet-api", "org-1,org-2"},
		{"scheme in lowercase", []string{"bearer " + tokenSupport}, 0, "support-tool", "*"},
		{"another caller's token", []string{"Bearer " + tokenBatch}, 0, "batch-worker.internal", "org-3"},
		{"wrong token", []string{"Bearer not-a-known-token"}, auth.ReasonTokenInvalid, "", ""},
		{"the file's digest instead of the token", []string{"Bearer " + digestOf(tokenWalletAPI)}, auth.ReasonTokenInvalid, "", ""},
		{"token without scheme", []string{tokenWalletAPI}, auth.ReasonTokenInvalid, "", ""},
		{"other scheme", []string{"Basic " + tokenWalletAPI}, auth.ReasonTokenInvalid, "", ""},
		{"scheme without token", []string{"Bearer"}, auth.ReasonTokenInvalid, "", ""},
		{"empty token", []string{"Bearer "}, auth.ReasonTokenInvalid, "", ""},
		{"two spaces", []string{"Bearer  " + tokenWalletAPI}, auth.ReasonTokenInvalid, "", ""},
		{"token with a trailing space", []string{"Bearer " + tokenWalletAPI + " "}, auth.ReasonTokenInvalid, "", ""},
		{"two authorization values", []string{"Bearer " + tokenWalletAPI, "Bearer " + tokenWalletAPI}, auth.ReasonTokenInvalid, "", ""},
	}
	calls := []struct {
		name string
		call func(context.Context, *grpc.ClientConn) (seenCaller, error)
	}{
		{"unary", getKeyAs},
		{"stream", secureFileAs},
	}
	for _, tt := range tests {
		for _, c := range calls {
			t.Run(tt.name+"/"+c.name, func(t *testing.T) {
				seen, err := c.call(withAuthorization(t, tt.header...), conn)
				if tt.wantReason != 0 {
					wantRefusal(t, err, codes.Unauthenticated, tt.wantReason)
					for _, secret := range []string{tokenWalletAPI, tokenSupport, tokenBatch, "not-a-known-token"} {
						if strings.Contains(err.Error(), secret) {
							t.Errorf("status %q echoes the token", err)
						}
					}
					return
				}
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				if !seen.authenticated || seen.name != tt.wantCaller {
					t.Fatalf("handler saw %+v, want caller %q", seen, tt.wantCaller)
				}
				if c.name == "unary" && seen.organisations != tt.wantOrgs {
					t.Fatalf("handler saw organisations %q, want %q", seen.organisations, tt.wantOrgs)
				}
			})
		}
	}

	// The logs name refusals by reason and a digest prefix an operator can
	// look up, and never carry a token.
	out := logs.String()
	for _, secret := range []string{tokenWalletAPI, tokenSupport, tokenBatch, "not-a-known-token"} {
		if strings.Contains(out, secret) {
			t.Errorf("a token reached the logs:\n%s", out)
		}
	}
	for _, want := range []string{
		`"reason":"CALLER_TOKEN_INVALID"`,
		`"reason":"CALLER_TOKEN_MISSING"`,
		`"token_sha256_prefix":"` + digestOf("not-a-known-token")[:8] + `"`,
		`"method":"/recovery.v1.RecoveryService/GetKey"`,
		`"method":"/recovery.v1.RecoveryService/SecureFile"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}
}

func TestHealthIsPublic(t *testing.T) {
	for _, publicReflection := range []bool{false, true} {
		a := newAuthenticator(t, auth.Config{PublicReflection: publicReflection}, nil)
		conn := dial(t, startServer(t, a, nil), nil)
		for _, header := range [][]string{nil, {"Bearer not-a-known-token"}, {"Basic x"}} {
			if err := checkHealth(withAuthorization(t, header...), conn); err != nil {
				t.Errorf("public reflection %v, authorization %q: health: %v", publicReflection, header, err)
			}
		}
	}
}

// listServices lists services through server reflection v1 or v1alpha.
func listServices(ctx context.Context, conn *grpc.ClientConn, alpha bool) ([]string, error) {
	//nolint:staticcheck // SA1019: v1alpha is deprecated, yet grpcurl and older clients still speak it
	if alpha {
		stream, err := reflectionv1alpha.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := exchange(stream, &reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{}})
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		return names, err
	}
	stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := exchange(stream, &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}})
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names, err
}

// exchange sends one request on a bidirectional stream and receives one
// response. A stream the server refused fails Send with io.EOF; its status
// comes from Recv, so Send's error is not the answer.
func exchange[Req, Resp any](stream grpc.BidiStreamingClient[Req, Resp], req *Req) (*Resp, error) {
	if err := stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	return resp, stream.CloseSend()
}

func TestReflection(t *testing.T) {
	tests := []struct {
		name             string
		publicReflection bool
		header           []string
		wantReason       recoveryv1.ErrorReason
	}{
		{"production, anonymous", false, nil, auth.ReasonTokenMissing},
		{"production, wrong token", false, []string{"Bearer not-a-known-token"}, auth.ReasonTokenInvalid},
		{"production, authenticated", false, []string{"Bearer " + tokenWalletAPI}, 0},
		{"development, anonymous", true, nil, 0},
	}
	for _, tt := range tests {
		a := newAuthenticator(t, auth.Config{PublicReflection: tt.publicReflection}, nil)
		conn := dial(t, startServer(t, a, nil), nil)
		for _, alpha := range []bool{false, true} {
			name := tt.name + "/v1"
			if alpha {
				name = tt.name + "/v1alpha"
			}
			t.Run(name, func(t *testing.T) {
				services, err := listServices(withAuthorization(t, tt.header...), conn, alpha)
				if tt.wantReason != 0 {
					wantRefusal(t, err, codes.Unauthenticated, tt.wantReason)
					return
				}
				if err != nil {
					t.Fatalf("reflection: %v", err)
				}
				if !strings.Contains(strings.Join(services, " "), "recovery.v1.RecoveryService") {
					t.Fatalf("reflection listed %q", services)
				}
			})
		}
	}
}

func TestPublicReflectionDoesNotOpenTheService(t *testing.T) {
	a := newAuthenticator(t, auth.Config{PublicReflection: true}, nil)
	conn := dial(t, startServer(t, a, nil), nil)
	_, err := getKeyAs(withAuthorization(t), conn)
	wantRefusal(t, err, codes.Unauthenticated, auth.ReasonTokenMissing)
}

func TestIsPublicMethod(t *testing.T) {
	tests := []struct {
		method           string
		publicReflection bool
		want             bool
	}{
		{"/grpc.health.v1.Health/Check", false, true},
		{"/grpc.health.v1.Health/Watch", false, true},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", false, false},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", true, true},
		{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", false, false},
		{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", true, true},
		{"/recovery.v1.RecoveryService/GetKey", true, false},
		{"/grpc.health.v1.HealthX/Check", true, false},
		{"/grpc.health.v1/Check", true, false},
		{"/grpc.reflection.v1.Other/Method", true, false},
		{"grpc.health.v1.Health", true, false},
	}
	for _, tt := range tests {
		if got := auth.IsPublicMethod(tt.method, tt.publicReflection); got != tt.want {
			t.Errorf("IsPublicMethod(%q, %v) = %v, want %v", tt.method, tt.publicReflection, got, tt.want)
		}
	}
}

func TestAuthenticationOff(t *testing.T) {
	// A nil *Authenticator is how recoveryd runs without a callers file: the
	// same chain, passing calls through with no caller.
	var off *auth.Authenticator
	conn := dial(t, startServer(t, off, nil), nil)
	for _, call := range []func(context.Context, *grpc.ClientConn) (seenCaller, error){getKeyAs, secureFileAs} {
		seen, err := call(withAuthorization(t), conn)
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		if seen.authenticated || seen.name != "" {
			t.Fatalf("handler saw %+v, want no caller", seen)
		}
	}
	if err := off.Mode().Authorize(withAuthorization(t), "org-1"); err != nil {
		t.Fatalf("Disabled Authorize without caller: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	if _, err := auth.New(auth.Config{}); err == nil {
		t.Error("New without a callers file succeeded")
	}
	if _, err := auth.New(auth.Config{CallersFile: writeCallersFile(t, `{"callers": []}`)}); err == nil {
		t.Error("New with an invalid callers file succeeded")
	}
}

// TestRefusalMessagesAreFixed pins the messages a person sees, so that a
// change to them is deliberate.
func TestRefusalMessagesAreFixed(t *testing.T) {
	a := newAuthenticator(t, auth.Config{}, nil)
	conn := dial(t, startServer(t, a, nil), nil)
	tests := []struct {
		header []string
		want   string
	}{
		{nil, `caller authentication required: send metadata "authorization: Bearer <token>" or a client certificate`},
		{[]string{"Token x"}, `authorization metadata must be exactly one value of the form "Bearer <token>"`},
		{[]string{"Bearer x"}, "caller token not recognised"},
	}
	for _, tt := range tests {
		_, err := getKeyAs(withAuthorization(t, tt.header...), conn)
		if got := status.Convert(err).Message(); got != tt.want {
			t.Errorf("authorization %q: message %q, want %q", tt.header, got, tt.want)
		}
	}
}
