package service_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// The callers of the authorization tests, as an operator would list them in
// the callers file. Test-only tokens.
var (
	walletAPI  = testCaller{name: "wallet-api", token: "test-token-wallet-api", orgs: []string{"org-1"}}
	org2Worker = testCaller{name: "org-2-worker", token: "test-token-org-2-worker", orgs: []string{"org-2"}}
	multiOrg   = testCaller{name: "multi-org", token: "test-token-multi-org", orgs: []string{"org-1", "org-3"}}
	support    = testCaller{name: "support-tool", token: "test-token-support-tool", orgs: []string{auth.AllOrganisations}}
	allCallers = []testCaller{walletAPI, org2Worker, multiOrg, support}
)

// as returns a context whose RPCs authenticate as c.
func as(t *testing.T, c testCaller) context.Context {
	return withToken(t.Context(), c.token)
}

// wantDenied checks err is the service's PermissionDenied for caller acting
// for customerID.
func wantDenied(t *testing.T, err error, caller testCaller, customerID string) {
	t.Helper()
	d := wantStatus(t, err, codes.PermissionDenied, service.ReasonOrganisationNotAllowed)
	want := map[string]string{"customer_id": customerID, "caller": caller.name}
	if diff := cmp.Diff(want, d.info.GetMetadata()); diff != "" {
		t.Errorf("ErrorInfo metadata (-want +got):\n%s", diff)
	}
	if d.message != service.MappedReasons()[service.ReasonOrganisationNotAllowed].Message {
		t.Errorf("message %q is not the fixed one", d.message)
	}
}

// wantKeyHidden checks err is exactly what a key that does not exist gets:
// NOT_FOUND, KEY_NOT_FOUND, the fixed message, and as metadata only what the
// caller sent (key_id, or the fingerprint of the public key sent), so a
// caller of another organisation cannot tell the key exists, nor whose it is.
func wantKeyHidden(t *testing.T, err error, key *recoveryv1.RecoveryKey, byPublicKey bool) {
	t.Helper()
	d := wantStatus(t, err, codes.NotFound, service.ReasonKeyNotFound)
	want := map[string]string{"key_id": key.GetKeyId()}
	if byPublicKey {
		pub, perr := keycrypto.ParsePublicKeyHex(key.GetPublicKeyHex())
		if perr != nil {
			t.Fatal(perr)
		}
		want = map[string]string{"fingerprint_sha256": pub.Fingerprint()}
	}
	if diff := cmp.Diff(want, d.info.GetMetadata()); diff != "" {
		t.Errorf("ErrorInfo metadata (-want +got):\n%s", diff)
	}
	if d.message != service.MappedReasons()[service.ReasonKeyNotFound].Message {
		t.Errorf("message %q is not the fixed one", d.message)
	}
}

// authzFixture is a fixture with caller authentication on and a key in each
// of org-1 and org-2, assigned by the support tool.
func authzFixture(t *testing.T, opts fixtureOptions) (f *fixture, org1Key, org2Key *recoveryv1.RecoveryKey) {
	t.Helper()
	opts.callers = allCallers
	f = newFixture(t, opts)
	for _, org := range []string{"org-1", "org-2"} {
		resp, err := f.client.AssignKey(as(t, support), assignRequest("user-setup", org))
		if err != nil {
			t.Fatalf("AssignKey(%s) as the support tool: %v", org, err)
		}
		if org == "org-1" {
			org1Key = resp.GetKey()
		} else {
			org2Key = resp.GetKey()
		}
	}
	return f, org1Key, org2Key
}

func TestAuthorizeAssignKey(t *testing.T) {
	f := newFixture(t, fixtureOptions{callers: allCallers})
	tests := []struct {
		name   string
		ctx    context.Context
		caller testCaller
		org    string
		// code is OK for an assignment, else the refusal.
		code   codes.Code
		reason recoveryv1.ErrorReason
	}{
		{"listed organisation", as(t, walletAPI), walletAPI, "org-1", codes.OK, 0},
		{"second listed organisation", as(t, multiOrg), multiOrg, "org-3", codes.OK, 0},
		{"every organisation", as(t, support), support, "org-2", codes.OK, 0},
		{"other organisation", as(t, walletAPI), walletAPI, "org-2", codes.PermissionDenied, service.ReasonOrganisationNotAllowed},
		{"organisation of another caller", as(t, org2Worker), org2Worker, "org-1", codes.PermissionDenied, service.ReasonOrganisationNotAllowed},
		{"no token", t.Context(), testCaller{}, "org-1", codes.Unauthenticated, auth.ReasonTokenMissing},
		{"unknown token", withToken(t.Context(), "not-a-listed-token"), testCaller{}, "org-1", codes.Unauthenticated, auth.ReasonTokenInvalid},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := fmt.Sprintf("user-assign-%d", i)
			req := assignRequest(user, tt.org)
			resp, err := f.client.AssignKey(tt.ctx, req)
			if tt.code != codes.OK {
				if tt.code == codes.PermissionDenied {
					wantDenied(t, err, tt.caller, tt.org)
				} else {
					wantStatus(t, err, tt.code, tt.reason)
				}
				// Nothing reached the upstream, and the registry did not
				// even reserve the pair: it is still free.
				for _, k := range f.inspect.Keys(t) {
					if k.UserIdentifier == user {
						t.Errorf("the upstream assigned key %s to a refused request", k.KeyID)
					}
				}
				if state := f.pairState(t, req); state != registry.AssignmentReserved {
					t.Errorf("registry state of the refused pair = %s, want it free (AssignmentReserved)", state)
				}
				return
			}
			if err != nil {
				t.Fatalf("AssignKey: %v", err)
			}
			if got := resp.GetKey().GetAssignedBy(); got != tt.caller.name {
				t.Errorf("assigned_by = %q, want %q", got, tt.caller.name)
			}
			recorded, err := f.store.GetKey(t.Context(), resp.GetKey().GetKeyId())
			if err != nil {
				t.Fatalf("registry GetKey: %v", err)
			}
			if recorded.Caller != tt.caller.name {
				t.Errorf("registry recorded caller %q, want %q", recorded.Caller, tt.caller.name)
			}
			// A repeat by the same caller returns the record, still
			// naming the caller that assigned it.
			again, err := f.client.AssignKey(tt.ctx, req)
			if err != nil {
				t.Fatalf("repeat AssignKey: %v", err)
			}
			if !again.GetAlreadyAssigned() || again.GetKey().GetAssignedBy() != tt.caller.name {
				t.Errorf("repeat: already_assigned=%v assigned_by=%q", again.GetAlreadyAssigned(), again.GetKey().GetAssignedBy())
			}
		})
	}
}

// secureDataTo is a SecureData request for key (by id, or by public key).
func secureDataTo(key *recoveryv1.RecoveryKey, byPublicKey bool, idempotencyKey string) *recoveryv1.SecureDataRequest {
	req := &recoveryv1.SecureDataRequest{
		Key:            &recoveryv1.SecureDataRequest_KeyId{KeyId: key.GetKeyId()},
		Payload:        &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte("share of " + key.GetKeyId())},
		IdempotencyKey: idempotencyKey,
	}
	if byPublicKey {
		req.Key = &recoveryv1.SecureDataRequest_PublicKeyHex{PublicKeyHex: key.GetPublicKeyHex()}
	}
	return req
}

func TestAuthorizeSecureData(t *testing.T) {
	f, org1Key, org2Key := authzFixture(t, fixtureOptions{})
	tests := []struct {
		name        string
		caller      testCaller
		key         *recoveryv1.RecoveryKey
		byPublicKey bool
		allowed     bool
	}{
		{"own organisation by key_id", walletAPI, org1Key, false, true},
		{"own organisation by public key", multiOrg, org1Key, true, true},
		{"every organisation", support, org2Key, false, true},
		{"other organisation by key_id", walletAPI, org2Key, false, false},
		{"other organisation by public key", walletAPI, org2Key, true, false},
		{"other organisation of a multi-organisation caller", multiOrg, org2Key, false, false},
		{"org-2's worker on org-1's key", org2Worker, org1Key, true, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idem := fmt.Sprintf("idem-%d", i)
			sandboxBefore, registryBefore := len(f.inspect.Backups(t)), len(f.registryBackups())
			resp, err := f.client.SecureData(as(t, tt.caller), secureDataTo(tt.key, tt.byPublicKey, idem))
			if !tt.allowed {
				wantKeyHidden(t, err, tt.key, tt.byPublicKey)
				if n := len(f.inspect.Backups(t)); n != sandboxBefore {
					t.Errorf("the upstream stored %d backups for a refused request", n-sandboxBefore)
				}
				if n := len(f.registryBackups()); n != registryBefore {
					t.Errorf("the registry recorded %d backups for a refused request", n-registryBefore)
				}
				// The refused request did not claim its idempotency key:
				// the caller may use it for a request it is allowed.
				own := org1Key
				if !slices.Contains(tt.caller.orgs, "org-1") {
					own = org2Key
				}
				if _, err := f.client.SecureData(as(t, tt.caller), secureDataTo(own, false, idem)); err != nil {
					t.Errorf("reusing the refused request's idempotency key for an allowed one: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("SecureData: %v", err)
			}
			backup := resp.GetBackup()
			if backup.GetStoredBy() != tt.caller.name {
				t.Errorf("stored_by = %q, want %q", backup.GetStoredBy(), tt.caller.name)
			}
			var recorded *registry.Backup
			for _, b := range f.registryBackups() {
				if b.BackupID == backup.GetBackupId() {
					recorded = &b
				}
			}
			if recorded == nil || recorded.Caller != tt.caller.name || recorded.CustomerID != tt.key.GetOrganisation().GetCustomerId() {
				t.Errorf("registry recorded %+v, want caller %q for %s", recorded, tt.caller.name, tt.key.GetOrganisation().GetCustomerId())
			}
		})
	}
}

func TestAuthorizeSecureFile(t *testing.T) {
	w := sandboxtest.NewWatch(secureFilePath, 0)
	f, org1Key, org2Key := authzFixture(t, fixtureOptions{wrap: w.Wrap})
	file := pattern(3000, 9)
	tests := []struct {
		name    string
		caller  testCaller
		header  *recoveryv1.SecureFileHeader
		allowed bool
	}{
		{"own organisation by key_id", walletAPI, byID(org1Key), true},
		{"every organisation by public key", support, &recoveryv1.SecureFileHeader{
			Key: &recoveryv1.SecureFileHeader_PublicKeyHex{PublicKeyHex: org2Key.GetPublicKeyHex()}}, true},
		{"other organisation by key_id", walletAPI, byID(org2Key), false},
		{"other organisation by public key", org2Worker, &recoveryv1.SecureFileHeader{
			Key: &recoveryv1.SecureFileHeader_PublicKeyHex{PublicKeyHex: org1Key.GetPublicKeyHex()}}, false},
		{"other organisation with an idempotency key", multiOrg, &recoveryv1.SecureFileHeader{
			Key:            &recoveryv1.SecureFileHeader_KeyId{KeyId: org2Key.GetKeyId()},
			Sha256:         sha256Hex(file),
			IdempotencyKey: "file-idem",
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			registryBefore := len(f.registryBackups())
			msgs := append([]*recoveryv1.SecureFileRequest{headerMsg(tt.header)}, chunksOf(file, service.MinChunkBytes)...)
			resp, err := f.sendFile(as(t, tt.caller), msgs)
			if !tt.allowed {
				owner := org1Key
				if tt.header.GetKeyId() == org2Key.GetKeyId() {
					owner = org2Key
				}
				wantKeyHidden(t, err, owner, tt.header.GetKeyId() == "")
				// Refused before the upload began: not one byte reached
				// the upstream.
				select {
				case <-w.Arrived():
					t.Error("a refused SecureFile opened an upload at the upstream")
				default:
				}
				if n := len(f.registryBackups()); n != registryBefore {
					t.Errorf("the registry recorded %d backups for a refused request", n-registryBefore)
				}
				if tt.header.GetIdempotencyKey() != "" {
					// The idempotency key was not claimed either.
					h := proto.Clone(tt.header).(*recoveryv1.SecureFileHeader)
					h.Key = &recoveryv1.SecureFileHeader_KeyId{KeyId: org1Key.GetKeyId()}
					if _, err := f.sendFile(as(t, tt.caller), append([]*recoveryv1.SecureFileRequest{headerMsg(h)}, chunksOf(file, service.MinChunkBytes)...)); err != nil {
						t.Errorf("reusing the refused request's idempotency key for an allowed one: %v", err)
					}
					<-w.Arrived()
					if code := w.NextEnd(t); code != http.StatusOK {
						t.Errorf("the allowed upload ended with %d", code)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("SecureFile: %v", err)
			}
			<-w.Arrived()
			if code := w.NextEnd(t); code != http.StatusOK {
				t.Errorf("the upload ended with %d", code)
			}
			if got := resp.GetBackup().GetStoredBy(); got != tt.caller.name {
				t.Errorf("stored_by = %q, want %q", got, tt.caller.name)
			}
			if !slices.ContainsFunc(f.inspect.Backups(t), func(b sandbox.InspectedBackup) bool { return b.BackupID == resp.GetBackup().GetBackupId() }) {
				t.Error("the upstream does not hold the allowed file")
			}
		})
	}
	// Only the allowed uploads (two, and the idempotency check's one) were
	// stored upstream.
	if n := len(f.inspect.Backups(t)); n != 3 {
		t.Errorf("the upstream holds %d backups, want 3", n)
	}
}

func TestAuthorizeGetKey(t *testing.T) {
	f, org1Key, org2Key := authzFixture(t, fixtureOptions{})
	tests := []struct {
		name   string
		caller testCaller
		keyID  string
		want   *recoveryv1.RecoveryKey
		code   codes.Code
		reason recoveryv1.ErrorReason
	}{
		{"own organisation", walletAPI, org1Key.GetKeyId(), org1Key, codes.OK, 0},
		{"every organisation", support, org2Key.GetKeyId(), org2Key, codes.OK, 0},
		{"other organisation", walletAPI, org2Key.GetKeyId(), nil, codes.NotFound, service.ReasonKeyNotFound},
		{"other organisation of org-2's worker", org2Worker, org1Key.GetKeyId(), nil, codes.NotFound, service.ReasonKeyNotFound},
		{"unknown key", walletAPI, "6f1c2a9e-0000-4000-8000-000000000009", nil, codes.NotFound, service.ReasonKeyNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.client.GetKey(as(t, tt.caller), &recoveryv1.GetKeyRequest{KeyId: tt.keyID})
			switch tt.code {
			case codes.OK:
				if err != nil {
					t.Fatalf("GetKey: %v", err)
				}
				if diff := cmp.Diff(tt.want, resp.GetKey(), protocmp.Transform()); diff != "" {
					t.Errorf("key (-want +got):\n%s", diff)
				}
				if resp.GetKey().GetAssignedBy() != support.name {
					t.Errorf("assigned_by = %q, want %q", resp.GetKey().GetAssignedBy(), support.name)
				}
			case codes.NotFound:
				key := &recoveryv1.RecoveryKey{KeyId: tt.keyID}
				wantKeyHidden(t, err, key, false)
			default:
				wantStatus(t, err, tt.code, tt.reason)
			}
		})
	}
}

// listAll pages through a listing with pages of two and returns every id,
// failing on a repeat or an endless paging.
func listAll(t *testing.T, page func(token string) (ids []string, next string, err error)) []string {
	t.Helper()
	var all []string
	token := ""
	for range 50 {
		ids, next, err := page(token)
		if err != nil {
			t.Fatalf("listing: %v", err)
		}
		if len(ids) > 2 {
			t.Fatalf("page of %d, asked for 2", len(ids))
		}
		for _, id := range ids {
			if slices.Contains(all, id) {
				t.Fatalf("%s listed twice", id)
			}
		}
		all = append(all, ids...)
		if next == "" {
			slices.Sort(all)
			return all
		}
		token = next
	}
	t.Fatal("paging does not end")
	return nil
}

func TestListingsAreScopedToTheCallersOrganisations(t *testing.T) {
	f := newFixture(t, fixtureOptions{callers: allCallers})
	// Keys and backups in three organisations, interleaved so that every
	// page of the newest-first listings mixes them.
	keysOf := map[string][]string{}
	backupsOf := map[string][]string{}
	keyOrg := map[string]string{}
	for i := range 9 {
		org := []string{"org-1", "org-2", "org-3"}[i%3]
		resp, err := f.client.AssignKey(as(t, support), assignRequest(fmt.Sprintf("user-%d", i), org))
		if err != nil {
			t.Fatalf("AssignKey: %v", err)
		}
		id := resp.GetKey().GetKeyId()
		keysOf[org] = append(keysOf[org], id)
		keyOrg[id] = org
		b, err := f.client.SecureData(as(t, support), secureDataTo(resp.GetKey(), false, ""))
		if err != nil {
			t.Fatalf("SecureData: %v", err)
		}
		backupsOf[org] = append(backupsOf[org], b.GetBackup().GetBackupId())
	}
	visible := func(orgs ...string) (keys, backups []string) {
		for _, org := range orgs {
			keys = append(keys, keysOf[org]...)
			backups = append(backups, backupsOf[org]...)
		}
		slices.Sort(keys)
		slices.Sort(backups)
		return keys, backups
	}

	tests := []struct {
		name       string
		caller     testCaller
		customerID string
		orgs       []string
	}{
		{"one organisation", walletAPI, "", []string{"org-1"}},
		{"another organisation", org2Worker, "", []string{"org-2"}},
		{"two organisations", multiOrg, "", []string{"org-1", "org-3"}},
		{"every organisation", support, "", []string{"org-1", "org-2", "org-3"}},
		{"naming an own organisation", multiOrg, "org-3", []string{"org-3"}},
		{"every organisation naming one", support, "org-2", []string{"org-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := as(t, tt.caller)
			wantKeys, wantBackups := visible(tt.orgs...)
			gotKeys := listAll(t, func(token string) ([]string, string, error) {
				resp, err := f.client.ListKeys(ctx, &recoveryv1.ListKeysRequest{CustomerId: tt.customerID, PageSize: 2, PageToken: token})
				var ids []string
				for _, k := range resp.GetKeys() {
					ids = append(ids, k.GetKeyId())
					if k.GetAssignedBy() != support.name {
						t.Errorf("key %s: assigned_by = %q, want %q", k.GetKeyId(), k.GetAssignedBy(), support.name)
					}
				}
				return ids, resp.GetNextPageToken(), err
			})
			if diff := cmp.Diff(wantKeys, gotKeys); diff != "" {
				t.Errorf("ListKeys (-want +got):\n%s", diff)
			}
			gotBackups := listAll(t, func(token string) ([]string, string, error) {
				resp, err := f.client.ListBackups(ctx, &recoveryv1.ListBackupsRequest{CustomerId: tt.customerID, PageSize: 2, PageToken: token})
				var ids []string
				for _, b := range resp.GetBackups() {
					ids = append(ids, b.GetBackupId())
					if b.GetStoredBy() != support.name {
						t.Errorf("backup %s: stored_by = %q, want %q", b.GetBackupId(), b.GetStoredBy(), support.name)
					}
				}
				return ids, resp.GetNextPageToken(), err
			})
			if diff := cmp.Diff(wantBackups, gotBackups); diff != "" {
				t.Errorf("ListBackups (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("naming another organisation is refused", func(t *testing.T) {
		for _, c := range []testCaller{walletAPI, org2Worker, multiOrg} {
			other := "org-2"
			if c.name == org2Worker.name {
				other = "org-1"
			}
			_, err := f.client.ListKeys(as(t, c), &recoveryv1.ListKeysRequest{CustomerId: other})
			wantDenied(t, err, c, other)
			_, err = f.client.ListBackups(as(t, c), &recoveryv1.ListBackupsRequest{CustomerId: other})
			wantDenied(t, err, c, other)
		}
	})
	t.Run("another organisation's key lists no backups", func(t *testing.T) {
		foreign := keysOf["org-2"][0]
		resp, err := f.client.ListBackups(as(t, walletAPI), &recoveryv1.ListBackupsRequest{KeyId: foreign})
		if err != nil {
			t.Fatalf("ListBackups: %v", err)
		}
		if n := len(resp.GetBackups()); n != 0 {
			t.Errorf("wallet-api sees %d backups of org-2's key", n)
		}
		own := keysOf["org-1"][0]
		resp, err = f.client.ListBackups(as(t, walletAPI), &recoveryv1.ListBackupsRequest{KeyId: own})
		if err != nil {
			t.Fatalf("ListBackups: %v", err)
		}
		if n := len(resp.GetBackups()); n != 1 || keyOrg[resp.GetBackups()[0].GetKeyId()] != "org-1" {
			t.Errorf("wallet-api sees %v for its own key, want its one backup", resp.GetBackups())
		}
	})
}

// TestOtherOrganisationsKeysDoNotExist: across two organisations, a caller
// of org-1 naming org-2's key gets the very status a key that does not
// exist gets (code, message, every detail; only the key_id echoed back
// differs, being what the caller sent), for GetKey and SecureData alike.
func TestOtherOrganisationsKeysDoNotExist(t *testing.T) {
	f, _, org2Key := authzFixture(t, fixtureOptions{})
	const missing = "6f1c2a9e-0000-4000-8000-00000000abcd"
	calls := map[string]func(keyID string) error{
		"GetKey": func(keyID string) error {
			_, err := f.client.GetKey(as(t, walletAPI), &recoveryv1.GetKeyRequest{KeyId: keyID})
			return err
		},
		"SecureData": func(keyID string) error {
			_, err := f.client.SecureData(as(t, walletAPI), secureDataTo(&recoveryv1.RecoveryKey{KeyId: keyID}, false, ""))
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			other, absent := status.Convert(call(org2Key.GetKeyId())), status.Convert(call(missing))
			if other.Code() != codes.NotFound || other.Code() != absent.Code() || other.Message() != absent.Message() {
				t.Fatalf("another organisation's key: %s %q; a missing key: %s %q; want the same NOT_FOUND",
					other.Code(), other.Message(), absent.Code(), absent.Message())
			}
			normalised := func(st *status.Status, keyID string) []any {
				var out []any
				for _, d := range st.Details() {
					if info, ok := d.(*errdetails.ErrorInfo); ok {
						info = proto.Clone(info).(*errdetails.ErrorInfo)
						if info.GetMetadata()["key_id"] == keyID {
							info.Metadata["key_id"] = "<sent>"
						}
						d = info
					}
					out = append(out, d)
				}
				return out
			}
			if diff := cmp.Diff(normalised(absent, missing), normalised(other, org2Key.GetKeyId()), protocmp.Transform()); diff != "" {
				t.Errorf("details differ between a missing key and another organisation's (-missing +other):\n%s", diff)
			}
		})
	}
}
