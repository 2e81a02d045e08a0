package app

import (
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/registry"
)

// operatorCaller has the operator role but acts for no organisation of the
// tests': the role alone admits it to every organisation's issues.
var operatorCaller = testCaller{name: "ops-console", token: "tok-ops-console-3b8e1f5a7c2d9e40", orgs: []string{"ops-org"}, roles: []string{"operator"}}

// adminService is the operators' service's name in reflection.
var adminService = recoveryv1.RecoveryAdminService_ServiceDesc.ServiceName

// openTestRegistry opens a SQLite registry of the test's own, for
// Options.Registry, so the test can set up rows the server then reads.
func openTestRegistry(t *testing.T) *registry.Store {
	t.Helper()
	store, err := registry.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return store
}

// parkPair reserves (user, customer) in store and parks it in state.
func parkPair(t *testing.T, store *registry.Store, user, customer string, state registry.AssignmentState) {
	t.Helper()
	terms := registry.KeyTerms{UserIdentifier: user, CustomerID: customer, CustomerName: "Customer " + customer,
		PackageID: testPackageID, PackageName: testPackageName, KeyEnvironment: "HOT", Caller: walletAPI.name}
	res, err := store.ReserveAssignment(t.Context(), terms, time.Minute)
	if err != nil || res.State != registry.AssignmentReserved {
		t.Fatalf("ReserveAssignment(%s) = %v, %v", user, res.State, err)
	}
	if err := store.FailAssignment(t.Context(), res.Token, state, "parked by the test"); err != nil {
		t.Fatal(err)
	}
}

// adminMethods are the full names of every RecoveryAdminService method.
func adminMethods() []string {
	sd := recoveryv1.RecoveryAdminService_ServiceDesc
	var out []string
	for _, m := range sd.Methods {
		out = append(out, "/"+sd.ServiceName+"/"+m.MethodName)
	}
	for _, s := range sd.Streams {
		out = append(out, "/"+sd.ServiceName+"/"+s.StreamName)
	}
	return out
}

// TestAdminServiceNeedsTheOperatorRole: every method of the operators'
// service, now and later, refuses a caller without the operator role
// (PERMISSION_DENIED, OPERATOR_ROLE_REQUIRED) before its request is even
// validated, and an operator sees every organisation's stuck pairs whatever
// its organisations list.
func TestAdminServiceNeedsTheOperatorRole(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI, operatorCaller)
	cfg.ReconcileInterval = 0 // no reconciler: its first pass, at start, would resolve the unknown pair
	store := openTestRegistry(t)
	parkPair(t, store, "user-unknown", testCustomerID, registry.AssignmentUnknown)
	parkPair(t, store, "user-orphaned", "other-org", registry.AssignmentOrphaned)
	srv := startReady(t, cfg, log, Options{Registry: store})
	ctx := testCtx(t)
	admin := recoveryv1.NewRecoveryAdminServiceClient(srv.conn)

	for _, method := range adminMethods() {
		// An empty message decodes as any request: the refusal comes first.
		err := srv.conn.Invoke(withToken(ctx, walletAPI.token), method, &emptypb.Empty{}, &emptypb.Empty{})
		wantStatus(t, err, codes.PermissionDenied, "OPERATOR_ROLE_REQUIRED")
		err = srv.conn.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{})
		wantStatus(t, err, codes.Unauthenticated, "CALLER_TOKEN_MISSING")
	}
	// An invalid request from a non-operator teaches it nothing of the rules.
	_, err := admin.ListAssignmentIssues(withToken(ctx, walletAPI.token), &recoveryv1.ListAssignmentIssuesRequest{PageSize: -1})
	wantStatus(t, err, codes.PermissionDenied, "OPERATOR_ROLE_REQUIRED")
	// The operator's invalid request is refused as invalid.
	_, err = admin.ListAssignmentIssues(withToken(ctx, operatorCaller.token), &recoveryv1.ListAssignmentIssuesRequest{PageSize: -1})
	wantStatus(t, err, codes.InvalidArgument, "INVALID_REQUEST", "page_size")

	resp, err := admin.ListAssignmentIssues(withToken(ctx, operatorCaller.token), &recoveryv1.ListAssignmentIssuesRequest{})
	if err != nil {
		t.Fatalf("ListAssignmentIssues as operator: %v", err)
	}
	got := map[string]recoveryv1.AssignmentIssueState{}
	for _, is := range resp.GetIssues() {
		got[is.GetUserIdentifier()+"@"+is.GetOrganisation().GetCustomerId()] = is.GetState()
		if is.GetReason() != "parked by the test" || is.GetRequestedBy() != walletAPI.name || is.GetReservedAt() == nil ||
			is.GetKeyEnvironment() != recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT || is.GetPackage().GetPackageId() != testPackageID {
			t.Errorf("issue %v lacks what was recorded", is)
		}
	}
	want := map[string]recoveryv1.AssignmentIssueState{
		"user-unknown@" + testCustomerID: recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_UNKNOWN,
		"user-orphaned@other-org":        recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_ORPHANED,
	}
	if len(got) != len(want) || got["user-unknown@"+testCustomerID] != want["user-unknown@"+testCustomerID] || got["user-orphaned@other-org"] != want["user-orphaned@other-org"] {
		t.Errorf("issues = %v, want %v", got, want)
	}
	only, err := admin.ListAssignmentIssues(withToken(ctx, operatorCaller.token), &recoveryv1.ListAssignmentIssuesRequest{
		State: recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_ORPHANED})
	if err != nil || len(only.GetIssues()) != 1 || only.GetIssues()[0].GetUserIdentifier() != "user-orphaned" {
		t.Errorf("orphaned only = %v, %v", only, err)
	}

	services, err := listServices(ctx, srv.conn)
	if err != nil || !slices.Contains(services, adminService) {
		t.Errorf("reflection lists %q, %v; want %s", services, err, adminService)
	}
}

// TestAdminServiceWithoutCallerAuthIsLoopbackOnly: with no callers file
// (development), the operators' service answers loopback peers only; the
// in-memory listener is no loopback interface, so it stands for a remote
// peer.
func TestAdminServiceWithoutCallerAuthIsLoopbackOnly(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	store := openTestRegistry(t)
	parkPair(t, store, "user-elsewhere", testCustomerID, registry.AssignmentElsewhere)

	remote := startReady(t, remoteConfig(t, up, t.TempDir()), log, Options{Registry: store})
	_, err := recoveryv1.NewRecoveryAdminServiceClient(remote.conn).ListAssignmentIssues(testCtx(t), &recoveryv1.ListAssignmentIssuesRequest{})
	wantStatus(t, err, codes.PermissionDenied, "OPERATOR_ROLE_REQUIRED")

	lis, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := startReady(t, remoteConfig(t, up, t.TempDir()), log, Options{Registry: store, Listener: lis})
	resp, err := recoveryv1.NewRecoveryAdminServiceClient(local.conn).ListAssignmentIssues(testCtx(t), &recoveryv1.ListAssignmentIssuesRequest{})
	if err != nil || len(resp.GetIssues()) != 1 || resp.GetIssues()[0].GetState() != recoveryv1.AssignmentIssueState_ASSIGNMENT_ISSUE_STATE_ELSEWHERE {
		t.Errorf("ListAssignmentIssues over loopback = %v, %v; want the one elsewhere pair", resp, err)
	}
}

// TestResolveAssignment: an operator re-sends an unknown pair's assignment
// now; the upstream never saw it, so the key is recorded and the customer's
// next AssignKey gets it. A pair that is not unknown is not re-sent.
func TestResolveAssignment(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI, operatorCaller)
	cfg.ReconcileInterval = 0 // no reconciler: its first pass, at start, would resolve the pair first
	store := openTestRegistry(t)
	parkPair(t, store, "user-unknown", testCustomerID, registry.AssignmentUnknown)
	parkPair(t, store, "user-orphaned", testCustomerID, registry.AssignmentOrphaned)
	srv := startReady(t, cfg, log, Options{Registry: store})
	ctx := withToken(testCtx(t), operatorCaller.token)
	admin := recoveryv1.NewRecoveryAdminServiceClient(srv.conn)

	resp, err := admin.ResolveAssignment(ctx, &recoveryv1.ResolveAssignmentRequest{UserIdentifier: "user-unknown", CustomerId: testCustomerID})
	if err != nil || resp.GetResolution() != recoveryv1.AssignmentResolution_ASSIGNMENT_RESOLUTION_RECORDED || resp.GetKey().GetKeyId() == "" {
		t.Fatalf("ResolveAssignment = %v, %v; want RECORDED with the key", resp, err)
	}
	if keys := up.Inspect.Keys(t); len(keys) != 1 || keys[0].KeyID != resp.GetKey().GetKeyId() {
		t.Errorf("the upstream holds %+v, want the one recorded key", keys)
	}
	got, err := srv.client.AssignKey(withToken(testCtx(t), walletAPI.token), assignKeyRequest("user-unknown", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	if err != nil || !got.GetAlreadyAssigned() || got.GetKey().GetKeyId() != resp.GetKey().GetKeyId() {
		t.Errorf("AssignKey after the resolution = %v, %v; want the recorded key", got, err)
	}

	for user, state := range map[string]string{"user-unknown": "recorded", "user-orphaned": "orphaned", "user-nobody": "none"} {
		_, err := admin.ResolveAssignment(ctx, &recoveryv1.ResolveAssignmentRequest{UserIdentifier: user, CustomerId: testCustomerID})
		wantStatus(t, err, codes.FailedPrecondition, "ASSIGNMENT_NOT_RESOLVABLE")
		if st := status.Convert(err); len(st.Details()) == 0 || st.Details()[0].(*errdetails.ErrorInfo).GetMetadata()["state"] != state {
			t.Errorf("ResolveAssignment(%s) details %v, want state %s", user, st.Details(), state)
		}
	}
	if n := len(up.Inspect.Keys(t)); n != 1 {
		t.Errorf("the upstream holds %d keys, want 1: a settled pair is never re-sent", n)
	}
	_, err = admin.ResolveAssignment(ctx, &recoveryv1.ResolveAssignmentRequest{UserIdentifier: "bad user", CustomerId: testCustomerID})
	wantStatus(t, err, codes.InvalidArgument, "INVALID_REQUEST", "user_identifier")
}
