package app

import (
	"context"
	"log/slog"
	"net"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
)

// interceptorName names the concern of an interceptor function from where it
// was built. Closures are named after their enclosing functions, with
// inlining adding the caller: "…/interceptors/logging.UnaryServerInterceptor.func1"
// and "…/logging.StreamServerInterceptor.StreamServerInterceptor.func2" are
// both "logging"; this package's "…/app.interceptorChain.validationUnary.func6"
// is "validation".
func interceptorName(fn any) string {
	name := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
	name = regexp.MustCompile(`(\.func\d+)+$`).ReplaceAllString(name, "")
	parts := strings.Split(name[strings.LastIndex(name, "/")+1:], ".")
	if pkg := parts[0]; pkg != "app" {
		return pkg
	}
	fnName := parts[len(parts)-1]
	for _, kind := range []string{"Unary", "Stream"} {
		fnName = strings.TrimSuffix(fnName, kind)
	}
	return fnName
}

// TestInterceptorChainsMatch: the unary and stream chains name the same
// interceptors in the same order, and that order is the one justified in
// interceptorChain.
func TestInterceptorChainsMatch(t *testing.T) {
	validator, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	// NOTE: a nil authenticator still occupies the auth position (its
	// interceptors pass calls through), so the chain's shape never depends
	// on the configuration.
	chain := interceptorChain(slog.Default(), validator, service.StatusFromValidation, nil)
	unary, stream := unaryInterceptors(chain), streamInterceptors(chain)
	var unaryNames, streamNames []string
	for _, u := range unary {
		unaryNames = append(unaryNames, interceptorName(u))
	}
	for _, s := range stream {
		streamNames = append(streamNames, interceptorName(s))
	}
	want := []string{"logging", "auth", "callFields", "validation", "recovery"}
	if strings.Join(unaryNames, ",") != strings.Join(want, ",") {
		t.Errorf("unary chain = %q, want %q", unaryNames, want)
	}
	if strings.Join(streamNames, ",") != strings.Join(unaryNames, ",") {
		t.Errorf("stream chain = %q, unary chain = %q: they must match", streamNames, unaryNames)
	}
	for i, c := range chain {
		if got := interceptorName(c.unary); got != c.name {
			t.Errorf("chain[%d] is labelled %q but holds %q", i, c.name, got)
		}
	}
}

// panickingService panics in every handler it implements.
type panickingService struct {
	recoveryv1.UnimplementedRecoveryServiceServer
}

func (panickingService) GetKey(context.Context, *recoveryv1.GetKeyRequest) (*recoveryv1.GetKeyResponse, error) {
	panic("handler bug: secret-free but loud")
}

func (panickingService) SecureFile(grpc.ClientStreamingServer[recoveryv1.SecureFileRequest, recoveryv1.SecureFileResponse]) error {
	panic("stream handler bug")
}

// TestChainOrderInAction runs the built server with handlers that panic:
// validation answers before the handler runs, recovery turns the panic
// into a bare Internal with its stack logged, and logging (outermost) logs
// the final code of both.
func TestChainOrderInAction(t *testing.T) {
	log, logs := newTestLogger(t)
	srv, err := newGRPCServer(log, panickingService{}, newHealthService(), service.StatusFromValidation, serverSecurity{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///chain",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := recoveryv1.NewRecoveryServiceClient(conn)
	ctx := testCtx(t)

	// Validation sits before the handler: an invalid request never reaches it.
	_, err = c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: "bad"})
	wantStatus(t, err, codes.InvalidArgument, "INVALID_REQUEST", "key_id")

	// Recovery: a panic is a bare Internal, no details, no panic text.
	for name, call := range map[string]func() error{
		"unary": func() error {
			_, err := c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"})
			return err
		},
		"stream": func() error {
			_, err := sendFile(ctx, c, fileHeader("6f1c2d3e-4a5b-4c6d-8e7f-901234567890"), []byte("x"))
			return err
		},
	} {
		err := call()
		st, _ := status.FromError(err)
		if st.Code() != codes.Internal || st.Message() != internalMessage || len(st.Details()) != 0 {
			t.Errorf("%s panic answered %v (details %v), want bare Internal %q", name, err, st.Details(), internalMessage)
		}
	}
	out := logs.String()
	for _, want := range []string{
		`"msg":"handler panicked","panic":"handler bug: secret-free but loud"`,
		`"msg":"handler panicked","panic":"stream handler bug"`,
		"chain_test.go", // the stack names where the panic happened
		// Logging is outside recovery and validation: it logs their codes.
		`"grpc.method":"GetKey","grpc.method_type":"unary"`,
		`"grpc.code":"Internal"`,
		`"grpc.code":"InvalidArgument"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if strings.Count(out, `"msg":"finished call"`) != 3 {
		t.Errorf("want one finished-call line per call (3), log:\n%s", out)
	}
}
