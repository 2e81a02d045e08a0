package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/audit"
	"github.com/walletprovider/recoveryservice/service/registry"
)

// allAuditEvents lists every call record, oldest first.
func allAuditEvents(t *testing.T, store *registry.Store) []registry.AuditEvent {
	t.Helper()
	var out []registry.AuditEvent
	token := ""
	for {
		page, next, err := store.ListAuditEvents(context.Background(), registry.AuditFilter{}, registry.Page{Size: registry.MaxPageSize, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if next == "" {
			break
		}
		token = next
	}
	slices.Reverse(out)
	return out
}

// TestEveryCallLeavesOneAuditRecord runs recoveryd with caller
// authentication and calls every RPC, allowed and refused (unauthenticated
// from the headers alone, invalid, another organisation's key, rate
// limited): each leaves exactly one record naming its caller, method,
// organisation, ids and outcome; the chain verifies; and no record holds
// the plaintext, a checksum or a token.
func TestEveryCallLeavesOneAuditRecord(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	oneCall, burst := 0.0001, 1
	limited := testCaller{name: "limited-api", token: "tok-limited-api-3e8d1f0a6b2c4d57", orgs: []string{testCustomerID},
		limits: callerLimitsJSON{RateLimit: &oneCall, RateBurst: &burst}}
	cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI, otherOrgAPI, limited)
	store := openTestRegistry(t)
	srv := startReady(t, cfg, log, Options{Registry: store})
	ctx := testCtx(t)
	c := srv.client
	wallet, other, lim := withToken(ctx, walletAPI.token), withToken(ctx, otherOrgAPI.token), withToken(ctx, limited.token)

	type want struct {
		method, caller, code, reason string
		org, pkg                     string
		keyID, backupID              bool
	}
	const svc = "/recovery.v1.RecoveryService/"
	var wants []want
	expect := func(w want) { wants = append(wants, w) }

	assigned, err := c.AssignKey(wallet, assignKeyRequest("user-audit", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	if err != nil {
		t.Fatal(err)
	}
	keyID := assigned.GetKey().GetKeyId()
	expect(want{svc + "AssignKey", walletAPI.name, "OK", "", testCustomerID, testPackageID, true, false})
	if _, err := c.AssignKey(wallet, assignKeyRequest("user-audit", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)); err != nil {
		t.Fatal(err)
	}
	expect(want{svc + "AssignKey", walletAPI.name, "OK", "", testCustomerID, testPackageID, true, false})
	if _, err := c.GetKey(wallet, &recoveryv1.GetKeyRequest{KeyId: keyID}); err != nil {
		t.Fatal(err)
	}
	expect(want{svc + "GetKey", walletAPI.name, "OK", "", testCustomerID, testPackageID, true, false})
	if _, err := c.ListKeys(wallet, &recoveryv1.ListKeysRequest{CustomerId: testCustomerID}); err != nil {
		t.Fatal(err)
	}
	expect(want{svc + "ListKeys", walletAPI.name, "OK", "", testCustomerID, "", false, false})
	plaintext := []byte("audit-test plaintext: violet staple orbit 7731")
	stored, err := c.SecureData(wallet, secureDataByKeyID(keyID, plaintext))
	if err != nil {
		t.Fatal(err)
	}
	expect(want{svc + "SecureData", walletAPI.name, "OK", "", testCustomerID, testPackageID, true, true})
	if _, err := sendFile(wallet, c, fileHeader(keyID), []byte("encrypted file bytes")); err != nil {
		t.Fatal(err)
	}
	expect(want{svc + "SecureFile", walletAPI.name, "OK", "", testCustomerID, testPackageID, true, true})
	if _, err := c.ListBackups(wallet, &recoveryv1.ListBackupsRequest{KeyId: keyID}); err != nil {
		t.Fatal(err)
	}
	expect(want{svc + "ListBackups", walletAPI.name, "OK", "", testCustomerID, "", true, false})

	// Refused from its headers by the pre-authentication tap.
	_, err = c.AssignKey(ctx, assignKeyRequest("user-audit-2", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	wantStatus(t, err, codes.Unauthenticated, "CALLER_TOKEN_MISSING")
	expect(want{svc + "AssignKey", "", "UNAUTHENTICATED", "CALLER_TOKEN_MISSING", "", "", false, false})
	_, err = c.AssignKey(wallet, assignKeyRequest("", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	wantStatus(t, err, codes.InvalidArgument, "INVALID_REQUEST", "user_identifier")
	expect(want{svc + "AssignKey", walletAPI.name, "INVALID_ARGUMENT", "INVALID_REQUEST", "", "", false, false})
	_, err = c.GetKey(other, &recoveryv1.GetKeyRequest{KeyId: keyID})
	wantStatus(t, err, codes.NotFound, "KEY_NOT_FOUND")
	expect(want{svc + "GetKey", otherOrgAPI.name, "NOT_FOUND", "KEY_NOT_FOUND", "", "", true, false})
	if _, err := c.GetKey(lim, &recoveryv1.GetKeyRequest{KeyId: keyID}); err != nil {
		t.Fatal(err)
	}
	expect(want{svc + "GetKey", limited.name, "OK", "", testCustomerID, testPackageID, true, false})
	_, err = c.GetKey(lim, &recoveryv1.GetKeyRequest{KeyId: keyID})
	wantStatus(t, err, codes.ResourceExhausted, "RATE_LIMITED")
	expect(want{svc + "GetKey", limited.name, "RESOURCE_EXHAUSTED", "RATE_LIMITED", "", "", true, false})

	// Stopping commits what is queued.
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	got := allAuditEvents(t, store)
	if len(got) != len(wants) {
		for _, e := range got {
			t.Logf("record: %s %s %s %s", e.Method, e.Caller, e.Code, e.Reason)
		}
		t.Fatalf("%d audit records for %d calls", len(got), len(wants))
	}
	for i, w := range wants {
		e := got[i]
		org := ""
		if len(e.Organisations) > 0 {
			org = strings.Join(e.Organisations, ",")
		}
		if e.Method != w.method || e.Caller != w.caller || e.Code != w.code || e.Reason != w.reason || org != w.org || e.PackageID != w.pkg ||
			(e.KeyID != "") != w.keyID || (e.BackupID != "") != w.backupID || e.Peer == "" || e.At.IsZero() {
			t.Errorf("record %d: %+v\nwant %+v", i, e, w)
		}
		if w.keyID && e.KeyID != keyID {
			t.Errorf("record %d names key %q, want %q", i, e.KeyID, keyID)
		}
	}
	if got[4].BackupID != stored.GetBackup().GetBackupId() {
		t.Errorf("SecureData's record names backup %q, want %q", got[4].BackupID, stored.GetBackup().GetBackupId())
	}
	rep, err := store.VerifyAudit(context.Background())
	if err != nil || rep.Broken != nil {
		t.Fatalf("verify: %v, broken %v", err, rep.Broken)
	}
	// Nothing secret in any record, in any field.
	secrets := map[string]string{
		"plaintext":        string(plaintext),
		"checksum":         stored.GetBackup().GetChecksumSha256(),
		"wallet token":     walletAPI.token,
		"other token":      otherOrgAPI.token,
		"limited token":    limited.token,
		"upstream token":   "Bearer",
		"public key (hex)": assigned.GetKey().GetPublicKeyHex()[:64],
	}
	for _, e := range got {
		text := fmt.Sprintf("%+v", e)
		for what, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("an audit record holds the %s: %s", what, text)
			}
		}
	}
}

// failingAuditStore is the real registry whose audit appends fail, as a
// full disk or a lost database would make them.
type failingAuditStore struct{ *registry.Store }

func (failingAuditStore) AppendAuditWrites(context.Context, *registry.AuditChain, []registry.AuditEntry, bool) ([]error, error) {
	return nil, errors.New("disk I/O error")
}

// countingService counts the GetKey calls that reach it.
type countingService struct {
	recoveryv1.UnimplementedRecoveryServiceServer
	calls chan struct{}
}

func (s countingService) GetKey(context.Context, *recoveryv1.GetKeyRequest) (*recoveryv1.GetKeyResponse, error) {
	s.calls <- struct{}{}
	return &recoveryv1.GetKeyResponse{}, nil
}

// TestAuditUnavailableFailsCallsInProductionOnly: with an audit writer
// whose commits fail, production refuses calls (UNAVAILABLE,
// AUDIT_UNAVAILABLE) before they reach a handler; development serves them
// and warns.
func TestAuditUnavailableFailsCallsInProductionOnly(t *testing.T) {
	for _, enforce := range []bool{true, false} {
		t.Run(fmt.Sprintf("enforce=%v", enforce), func(t *testing.T) {
			log, logs := newTestLogger(t)
			// NOTE: its own meter: its failures must not reach the global
			// counters another test of this process reads.
			w, err := audit.Start(audit.Config{Store: failingAuditStore{openTestRegistry(t)}, Logger: log, MeterProvider: noop.NewMeterProvider()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 0)
				defer cancel()
				_ = w.Close(ctx)
			})
			// The writer learns its commits fail.
			if err := w.SubmitAndWait(t.Context(), registry.AuditEvent{Method: "warm-up"}); !errors.Is(err, audit.ErrUnavailable) {
				t.Fatalf("warm-up record: %v", err)
			}
			cfg := DefaultConfig()
			cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI)
			authn, stopWatch, err := newAuthenticator(t.Context(), cfg, log, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stopWatch)
			svc := countingService{calls: make(chan struct{}, 10)}
			sec := serverSecurity{authn: authn, audit: newAuditor(w, nil, enforce, log)}
			srv, err := newGRPCServer(log, svc, newHealthService(), service.StatusFromValidation, sec, overloadLimits{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			c := serveInMemory(t, srv)
			_, err = c.GetKey(withToken(testCtx(t), walletAPI.token), &recoveryv1.GetKeyRequest{KeyId: "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"})
			if enforce {
				wantStatus(t, err, codes.Unavailable, "AUDIT_UNAVAILABLE")
				if len(svc.calls) != 0 {
					t.Fatal("a call that could not be audited reached its handler")
				}
				return
			}
			if err != nil {
				t.Fatalf("development refused a call it could not audit: %v", err)
			}
			if len(svc.calls) != 1 || !strings.Contains(logs.String(), "audit record not written") {
				t.Fatalf("development: %d handler calls, warning logged: %v", len(svc.calls), strings.Contains(logs.String(), "audit record not written"))
			}
		})
	}
}

// TestOperatorsListAndVerifyTheAuditTrail: an operator lists the records by
// caller, organisation and time through the admin service, and
// VerifyAuditChain reports the first broken link once a record was edited
// in the database.
func TestOperatorsListAndVerifyTheAuditTrail(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI, operatorCaller)
	path := filepath.Join(t.TempDir(), "registry.db")
	store, err := registry.OpenSQLite(t.Context(), path, registry.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	srv := startReady(t, cfg, log, Options{Registry: store})
	ctx := testCtx(t)
	admin := recoveryv1.NewRecoveryAdminServiceClient(srv.conn)
	op := withToken(ctx, operatorCaller.token)

	before := time.Now()
	if _, err := srv.client.AssignKey(withToken(ctx, walletAPI.token), assignKeyRequest("user-listed", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_COLD)); err != nil {
		t.Fatal(err)
	}
	// The record is committed by the group writer: wait for it.
	var listed *recoveryv1.ListAuditEventsResponse
	for deadline := time.Now().Add(testDeadline); ; {
		listed, err = admin.ListAuditEvents(op, &recoveryv1.ListAuditEventsRequest{Caller: walletAPI.name, CustomerId: testCustomerID, StartTime: timestamppb.New(before)})
		if err != nil {
			t.Fatal(err)
		}
		if len(listed.GetEvents()) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(listed.GetEvents()) != 1 {
		t.Fatalf("ListAuditEvents by caller and organisation: %v", listed.GetEvents())
	}
	e := listed.GetEvents()[0]
	if e.GetMethod() != recoveryv1.RecoveryService_AssignKey_FullMethodName || e.GetCode() != "OK" || e.GetPackageId() != testPackageID ||
		len(e.GetHash()) != 64 || len(e.GetPrevHash()) != 64 || e.GetWriterId() == "" {
		t.Fatalf("listed record %v", e)
	}
	none, err := admin.ListAuditEvents(op, &recoveryv1.ListAuditEventsRequest{Caller: walletAPI.name, EndTime: timestamppb.New(before)})
	if err != nil || len(none.GetEvents()) != 0 {
		t.Fatalf("records before the call: %v, %v", none.GetEvents(), err)
	}
	_, err = admin.ListAuditEvents(op, &recoveryv1.ListAuditEventsRequest{PageToken: "not-a-token"})
	wantStatus(t, err, codes.InvalidArgument, "INVALID_PAGE_TOKEN")

	verified, err := admin.VerifyAuditChain(op, &recoveryv1.VerifyAuditChainRequest{})
	if err != nil || !verified.GetOk() || verified.GetRecords() < 1 {
		t.Fatalf("VerifyAuditChain: %v, %v", verified, err)
	}
	// NOTE: the running server holds the file; wait for its write lock.
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `UPDATE audit_events SET code = 'PERMISSION_DENIED' WHERE writer_id = $1 AND seq = $2`, e.GetWriterId(), e.GetSeq()); err != nil {
		t.Fatal(err)
	}
	broken, err := admin.VerifyAuditChain(op, &recoveryv1.VerifyAuditChainRequest{})
	if err != nil || broken.GetOk() || broken.GetBroken().GetWriterId() != e.GetWriterId() || broken.GetBroken().GetSeq() != e.GetSeq() {
		t.Fatalf("VerifyAuditChain after an edit: %v, %v; want record %s/%d", broken, err, e.GetWriterId(), e.GetSeq())
	}
}
