package service_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
)

func TestGetKey(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	key := f.mustAssign("user-1", "org-1")
	tests := []struct {
		name   string
		keyID  string
		want   *recoveryv1.RecoveryKey
		code   codes.Code
		reason recoveryv1.ErrorReason
	}{
		{"recorded", key.GetKeyId(), key, codes.OK, 0},
		{"unknown", "6f1c2a9e-0000-4000-8000-000000000003", nil, codes.NotFound, service.ReasonKeyNotFound},
		{"empty", "", nil, codes.InvalidArgument, service.ReasonInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.client.GetKey(t.Context(), &recoveryv1.GetKeyRequest{KeyId: tt.keyID})
			if tt.code != codes.OK {
				wantStatus(t, err, tt.code, tt.reason)
				return
			}
			if err != nil {
				t.Fatalf("GetKey: %v", err)
			}
			if diff := cmp.Diff(tt.want, resp.GetKey(), protocmp.Transform()); diff != "" {
				t.Errorf("key (-want +got):\n%s", diff)
			}
		})
	}
}

func TestListKeysPagesAndFilters(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	byID := map[string]*recoveryv1.RecoveryKey{}
	for i := range 5 {
		customer := "org-a"
		if i%2 == 1 {
			customer = "org-b"
		}
		k := f.mustAssign(fmt.Sprintf("user-%d", i), customer)
		byID[k.GetKeyId()] = k
	}
	tests := []struct {
		name     string
		req      *recoveryv1.ListKeysRequest
		wantKeys int
	}{
		{"all", &recoveryv1.ListKeysRequest{PageSize: 2}, 5},
		{"one organisation", &recoveryv1.ListKeysRequest{CustomerId: "org-b", PageSize: 1}, 2},
		{"one user", &recoveryv1.ListKeysRequest{CustomerId: "org-a", UserIdentifier: "user-2"}, 1},
		{"nobody", &recoveryv1.ListKeysRequest{CustomerId: "org-z"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[string]bool{}
			req := tt.req
			for page := 0; ; page++ {
				if page > 10 {
					t.Fatal("paging does not end")
				}
				resp, err := f.client.ListKeys(t.Context(), req)
				if err != nil {
					t.Fatalf("ListKeys: %v", err)
				}
				if size := req.GetPageSize(); size > 0 && len(resp.GetKeys()) > int(size) {
					t.Errorf("page of %d keys, asked for %d", len(resp.GetKeys()), size)
				}
				for _, k := range resp.GetKeys() {
					if seen[k.GetKeyId()] {
						t.Errorf("key %s listed twice", k.GetKeyId())
					}
					seen[k.GetKeyId()] = true
					if diff := cmp.Diff(byID[k.GetKeyId()], k, protocmp.Transform()); diff != "" {
						t.Errorf("listed key differs from AssignKey's (-assign +list):\n%s", diff)
					}
					if tt.req.GetCustomerId() != "" && k.GetOrganisation().GetCustomerId() != tt.req.GetCustomerId() {
						t.Errorf("key of %s listed under filter %s", k.GetOrganisation().GetCustomerId(), tt.req.GetCustomerId())
					}
				}
				if resp.GetNextPageToken() == "" {
					break
				}
				req = &recoveryv1.ListKeysRequest{
					CustomerId: tt.req.GetCustomerId(), UserIdentifier: tt.req.GetUserIdentifier(),
					PageSize: tt.req.GetPageSize(), PageToken: resp.GetNextPageToken(),
				}
			}
			if len(seen) != tt.wantKeys {
				t.Errorf("listed %d keys, want %d", len(seen), tt.wantKeys)
			}
		})
	}
}

func TestListBackupsFilters(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	k1 := f.mustAssign("user-1", "org-a")
	k2 := f.mustAssign("user-2", "org-b")
	for _, k := range []*recoveryv1.RecoveryKey{k1, k1, k2} {
		if _, err := f.client.SecureData(t.Context(), &recoveryv1.SecureDataRequest{
			Key:     &recoveryv1.SecureDataRequest_KeyId{KeyId: k.GetKeyId()},
			Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte("share")},
		}); err != nil {
			t.Fatalf("SecureData: %v", err)
		}
	}
	tests := []struct {
		name string
		req  *recoveryv1.ListBackupsRequest
		want int
	}{
		{"all", &recoveryv1.ListBackupsRequest{}, 3},
		{"by key", &recoveryv1.ListBackupsRequest{KeyId: k1.GetKeyId()}, 2},
		{"by organisation", &recoveryv1.ListBackupsRequest{CustomerId: "org-b"}, 1},
		{"first page", &recoveryv1.ListBackupsRequest{PageSize: 2}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.client.ListBackups(t.Context(), tt.req)
			if err != nil {
				t.Fatalf("ListBackups: %v", err)
			}
			if len(resp.GetBackups()) != tt.want {
				t.Errorf("listed %d backups, want %d", len(resp.GetBackups()), tt.want)
			}
			for _, b := range resp.GetBackups() {
				if tt.req.GetKeyId() != "" && b.GetKeyId() != tt.req.GetKeyId() {
					t.Errorf("backup of key %s listed under key filter", b.GetKeyId())
				}
				if tt.req.GetCustomerId() != "" && b.GetCustomerId() != tt.req.GetCustomerId() {
					t.Errorf("backup of %s listed under organisation filter", b.GetCustomerId())
				}
			}
		})
	}
}

func TestListingRejectsForeignPageTokens(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	_, err := f.client.ListKeys(t.Context(), &recoveryv1.ListKeysRequest{PageToken: "not-a-token"})
	d := wantStatus(t, err, codes.InvalidArgument, service.ReasonInvalidPageToken)
	if diff := cmp.Diff([]string{"page_token"}, d.fields()); diff != "" {
		t.Errorf("field violations (-want +got):\n%s", diff)
	}
	_, err = f.client.ListBackups(t.Context(), &recoveryv1.ListBackupsRequest{PageToken: "bm90LWEtdG9rZW4"})
	wantStatus(t, err, codes.InvalidArgument, service.ReasonInvalidPageToken)
}
