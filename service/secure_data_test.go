package service_test

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// unassignedKey is a valid RSA-4096 key the sandbox never hands out in these
// tests (its source starts at the beginning of the pool).
func unassignedKey(t *testing.T) *keycrypto.PublicKey {
	t.Helper()
	pub, err := keycrypto.PublicKeyFromPrivate(testkeys.RSA(testkeys.RSACount - 1))
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// seal encrypts plaintext to key as a careful caller would.
func seal(t *testing.T, key *recoveryv1.RecoveryKey, plaintext []byte) *recoveryv1.SealedPayload {
	t.Helper()
	pub, err := keycrypto.ParsePublicKeyPEM([]byte(key.GetPublicKeyPem()))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := keycrypto.Encrypt(rand.Reader, pub, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	return &recoveryv1.SealedPayload{Ciphertext: ct, ChecksumSha256: keycrypto.Checksum(plaintext)}
}

func TestSecureDataStoresAndRecovers(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	key := f.mustAssign("user-1", "org-1")
	byID := func() *recoveryv1.SecureDataRequest {
		return &recoveryv1.SecureDataRequest{Key: &recoveryv1.SecureDataRequest_KeyId{KeyId: key.GetKeyId()}}
	}
	byPublicKey := func() *recoveryv1.SecureDataRequest {
		// Upper case: the key is the same key whatever the hex case.
		return &recoveryv1.SecureDataRequest{Key: &recoveryv1.SecureDataRequest_PublicKeyHex{
			PublicKeyHex: strings.ToUpper(key.GetPublicKeyHex())}}
	}
	maxPlaintext := bytes.Repeat([]byte{'w'}, keycrypto.MaxPlaintextLen)
	meta := &recoveryv1.BackupMetadata{Description: "seed phrase", ContentType: "text/plain", OriginalFilename: "seed.txt"}

	tests := []struct {
		name      string
		req       func() *recoveryv1.SecureDataRequest
		plaintext []byte
		sealed    bool
		metadata  *recoveryv1.BackupMetadata
	}{
		{"plaintext by key_id", byID, []byte("abandon ability able about above absent"), false, nil},
		{"plaintext by public key", byPublicKey, []byte("zoo zone zero"), false, meta},
		{"plaintext of 446 bytes", byID, maxPlaintext, false, nil},
		{"sealed by key_id", byID, []byte("sealed by the caller"), true, meta},
		{"sealed by public key", byPublicKey, []byte("sealed, named by public key"), true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req()
			req.Metadata = tt.metadata
			if tt.sealed {
				req.Payload = &recoveryv1.SecureDataRequest_Sealed{Sealed: seal(t, key, tt.plaintext)}
			} else {
				req.Payload = &recoveryv1.SecureDataRequest_Plaintext{Plaintext: bytes.Clone(tt.plaintext)}
			}
			resp, err := f.client.SecureData(t.Context(), req)
			if err != nil {
				t.Fatalf("SecureData: %v", err)
			}
			got := resp.GetBackup()
			want := &recoveryv1.Backup{
				BackupType:     recoveryv1.BackupType_BACKUP_TYPE_DATA,
				KeyId:          key.GetKeyId(),
				ChecksumSha256: keycrypto.Checksum(tt.plaintext),
				SizeBytes:      keycrypto.CiphertextLen,
				Metadata:       tt.metadata,
				CustomerId:     "org-1",
				PackageId:      "pkg-1",
			}
			if diff := cmp.Diff(want, got, protocmp.Transform(),
				protocmp.IgnoreFields(&recoveryv1.Backup{}, "backup_id", "stored_at")); diff != "" {
				t.Errorf("backup (-want +got):\n%s", diff)
			}
			if got.GetBackupId() == "" || got.GetStoredAt() == nil {
				t.Errorf("backup_id %q / stored_at %v not set", got.GetBackupId(), got.GetStoredAt())
			}

			// The upstream holds it against the right key, customer and
			// package, and a recovery gives the plaintext back.
			var stored *sandbox.InspectedBackup
			for _, b := range f.inspect.Backups(t) {
				if b.BackupID == got.GetBackupId() {
					stored = &b
				}
			}
			if stored == nil {
				t.Fatal("the sandbox does not hold the backup")
			}
			if stored.KeyID != key.GetKeyId() || stored.CustomerID != "org-1" || stored.PackageID != "pkg-1" ||
				stored.Checksum != want.GetChecksumSha256() || stored.Metadata.Description != tt.metadata.GetDescription() {
				t.Errorf("sandbox filed the backup as %+v", stored)
			}
			if n := len(f.inspect.Content(t, got.GetBackupId())); n != keycrypto.CiphertextLen {
				t.Errorf("stored ciphertext is %d bytes, want %d", n, keycrypto.CiphertextLen)
			}
			if recovered := f.inspect.Recover(t, got.GetBackupId()); !bytes.Equal(recovered, tt.plaintext) {
				t.Errorf("recovered %q, want %q", recovered, tt.plaintext)
			}

			// The registry recorded the same backup.
			list, err := f.client.ListBackups(t.Context(), &recoveryv1.ListBackupsRequest{KeyId: key.GetKeyId()})
			if err != nil {
				t.Fatal(err)
			}
			var recorded *recoveryv1.Backup
			for _, b := range list.GetBackups() {
				if b.GetBackupId() == got.GetBackupId() {
					recorded = b
				}
			}
			// The response echoes the plaintext's checksum to its sender;
			// the record holds none, neither the plaintext's nor any
			// other.
			if got.GetChecksumSha256() != want.GetChecksumSha256() {
				t.Errorf("response checksum = %s, want the plaintext's %s", got.GetChecksumSha256(), want.GetChecksumSha256())
			}
			if recorded.GetChecksumSha256() != "" {
				t.Errorf("listed checksum = %s, want none (the plaintext's is %s)", recorded.GetChecksumSha256(), want.GetChecksumSha256())
			}
			echoed := proto.Clone(recorded).(*recoveryv1.Backup)
			echoed.ChecksumSha256 = want.GetChecksumSha256()
			if diff := cmp.Diff(got, echoed, protocmp.Transform()); diff != "" {
				t.Errorf("recorded backup differs from the response beyond the checksum (-response +recorded):\n%s", diff)
			}
		})
	}
}

func TestSecureDataZeroesThePlaintext(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	key := f.mustAssign("user-1", "org-1")
	// NOTE: a call through recoveryd hands the handler bytes the codec
	// decoded, which the test cannot see; so the handler is called here in
	// process, wired to the fixture's upstream and registry, to look at
	// the very request it was given.
	handler := f.inProcessServer(t)
	tests := []struct {
		name  string
		keyID string
		ok    bool
	}{
		{"stored", key.GetKeyId(), true},
		{"unknown key", "00000000-0000-4000-8000-000000000000", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := []byte("correct horse battery staple")
			req := &recoveryv1.SecureDataRequest{
				Key:     &recoveryv1.SecureDataRequest_KeyId{KeyId: tt.keyID},
				Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: bytes.Clone(secret)},
			}
			// In process, so the test sees the very bytes the handler got.
			resp, err := handler.SecureData(t.Context(), req)
			if (err == nil) != tt.ok {
				t.Fatalf("SecureData error = %v, want ok=%v", err, tt.ok)
			}
			if !bytes.Equal(req.GetPlaintext(), make([]byte, len(secret))) {
				t.Errorf("request plaintext not zeroed: %q", req.GetPlaintext())
			}
			if tt.ok {
				if got := f.inspect.Recover(t, resp.GetBackup().GetBackupId()); !bytes.Equal(got, secret) {
					t.Errorf("recovered %q, want the plaintext sent", got)
				}
			}
		})
	}
}

func TestSecureDataRejected(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	key := f.mustAssign("user-1", "org-1")
	other := unassignedKey(t)
	otherSealed := func() *recoveryv1.SealedPayload {
		ct, err := keycrypto.Encrypt(rand.Reader, other, []byte("to the wrong key"))
		if err != nil {
			t.Fatal(err)
		}
		return &recoveryv1.SealedPayload{Ciphertext: ct, ChecksumSha256: keycrypto.Checksum([]byte("to the wrong key"))}
	}
	wrongChecksum := seal(t, key, []byte("the plaintext"))
	wrongChecksum.ChecksumSha256 = keycrypto.Checksum([]byte("another plaintext"))
	checksumOfCiphertext := seal(t, key, []byte("the plaintext"))
	checksumOfCiphertext.ChecksumSha256 = keycrypto.Checksum(checksumOfCiphertext.GetCiphertext())

	keyID := &recoveryv1.SecureDataRequest_KeyId{KeyId: key.GetKeyId()}
	small := &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte("small")}
	tests := []struct {
		name   string
		req    *recoveryv1.SecureDataRequest
		code   codes.Code
		reason recoveryv1.ErrorReason
		fields []string
		// says is a phrase the field violation must contain.
		says string
	}{
		{"unknown key_id", &recoveryv1.SecureDataRequest{
			Key: &recoveryv1.SecureDataRequest_KeyId{KeyId: "6f1c2a9e-0000-4000-8000-000000000001"}, Payload: small},
			codes.NotFound, service.ReasonKeyNotFound, nil, ""},
		{"public key never assigned", &recoveryv1.SecureDataRequest{
			Key: &recoveryv1.SecureDataRequest_PublicKeyHex{PublicKeyHex: other.Hex()}, Payload: small},
			codes.NotFound, service.ReasonKeyNotFound, nil, ""},
		{"public key of odd length", &recoveryv1.SecureDataRequest{
			Key: &recoveryv1.SecureDataRequest_PublicKeyHex{PublicKeyHex: key.GetPublicKeyHex()[:1099]}, Payload: small},
			codes.InvalidArgument, service.ReasonInvalidPublicKey, []string{"public_key_hex"}, "odd length"},
		{"public key one byte short", &recoveryv1.SecureDataRequest{
			Key: &recoveryv1.SecureDataRequest_PublicKeyHex{PublicKeyHex: key.GetPublicKeyHex()[:1098]}, Payload: small},
			codes.InvalidArgument, service.ReasonInvalidPublicKey, []string{"public_key_hex"}, "truncated"},
		{"plaintext of 447 bytes", &recoveryv1.SecureDataRequest{Key: keyID,
			Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: make([]byte, keycrypto.MaxPlaintextLen+1)}},
			codes.InvalidArgument, service.ReasonPlaintextTooLarge, []string{"plaintext"}, "at most 446 bytes"},
		{"empty plaintext", &recoveryv1.SecureDataRequest{Key: keyID,
			Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte{}}},
			codes.InvalidArgument, service.ReasonInvalidRequest, []string{"plaintext"}, ""},
		{"sealed ciphertext not one block", &recoveryv1.SecureDataRequest{Key: keyID,
			Payload: &recoveryv1.SecureDataRequest_Sealed{Sealed: &recoveryv1.SealedPayload{
				Ciphertext: make([]byte, 511), ChecksumSha256: keycrypto.Checksum([]byte("x"))}}},
			codes.InvalidArgument, service.ReasonInvalidRequest, []string{"sealed.ciphertext"}, ""},
		{"sealed checksum malformed", &recoveryv1.SecureDataRequest{Key: keyID,
			Payload: &recoveryv1.SecureDataRequest_Sealed{Sealed: &recoveryv1.SealedPayload{
				Ciphertext: wrongChecksum.GetCiphertext(), ChecksumSha256: "abc"}}},
			codes.InvalidArgument, service.ReasonInvalidRequest, []string{"sealed.checksum_sha256"}, "[0-9a-fA-F]{64}"},
		{"sealed with the checksum of another plaintext", &recoveryv1.SecureDataRequest{Key: keyID,
			Payload: &recoveryv1.SecureDataRequest_Sealed{Sealed: wrongChecksum}},
			codes.InvalidArgument, service.ReasonUpstreamRejectedRequest, nil, ""},
		{"sealed with the checksum of the ciphertext", &recoveryv1.SecureDataRequest{Key: keyID,
			Payload: &recoveryv1.SecureDataRequest_Sealed{Sealed: checksumOfCiphertext}},
			codes.InvalidArgument, service.ReasonUpstreamRejectedRequest, nil, ""},
		{"sealed to another key", &recoveryv1.SecureDataRequest{Key: keyID,
			Payload: &recoveryv1.SecureDataRequest_Sealed{Sealed: otherSealed()}},
			codes.InvalidArgument, service.ReasonUpstreamRejectedRequest, nil, ""},
		{"no key", &recoveryv1.SecureDataRequest{Payload: small},
			codes.InvalidArgument, service.ReasonInvalidRequest, []string{"key"}, ""},
		{"no payload", &recoveryv1.SecureDataRequest{Key: keyID},
			codes.InvalidArgument, service.ReasonInvalidRequest, []string{"payload"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.client.SecureData(t.Context(), tt.req)
			d := wantStatus(t, err, tt.code, tt.reason)
			if diff := cmp.Diff(tt.fields, d.fields()); diff != "" {
				t.Errorf("field violations (-want +got):\n%s", diff)
			}
			if tt.says != "" && !strings.Contains(d.badRequest.GetFieldViolations()[0].GetDescription(), tt.says) {
				t.Errorf("field violation %q does not say %q", d.badRequest.GetFieldViolations()[0].GetDescription(), tt.says)
			}
			if n := len(f.inspect.Backups(t)); n != 0 {
				t.Errorf("upstream stored %d backups", n)
			}
			if n := len(f.registryBackups()); n != 0 {
				t.Errorf("registry recorded %d backups", n)
			}
		})
	}
}

func TestSecureDataIdempotency(t *testing.T) {
	// Idempotency keys are scoped per caller: two callers of one
	// organisation, authenticated as an operator would list them.
	otherService := testCaller{name: "other-service", token: "test-token-other-service", orgs: []string{"org-1"}}
	f := newFixture(t, fixtureOptions{callers: []testCaller{walletAPI, otherService}})
	assigned, err := f.client.AssignKey(as(t, walletAPI), assignRequest("user-1", "org-1"))
	if err != nil {
		t.Fatalf("AssignKey: %v", err)
	}
	key := assigned.GetKey()
	request := func(idem string, plaintext string, description string) *recoveryv1.SecureDataRequest {
		return &recoveryv1.SecureDataRequest{
			Key:            &recoveryv1.SecureDataRequest_KeyId{KeyId: key.GetKeyId()},
			Payload:        &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte(plaintext)},
			Metadata:       &recoveryv1.BackupMetadata{Description: description},
			IdempotencyKey: idem,
		}
	}
	first, err := f.client.SecureData(as(t, walletAPI), request("idem-1", "share one", "first share"))
	if err != nil {
		t.Fatalf("first SecureData: %v", err)
	}

	t.Run("repeat returns the recorded backup", func(t *testing.T) {
		again, err := f.client.SecureData(as(t, walletAPI), request("idem-1", "share one", "first share"))
		if err != nil {
			t.Fatalf("repeat SecureData: %v", err)
		}
		if diff := cmp.Diff(first.GetBackup(), again.GetBackup(), protocmp.Transform()); diff != "" {
			t.Errorf("repeat returned another backup (-first +repeat):\n%s", diff)
		}
		if n := len(f.inspect.Backups(t)); n != 1 {
			t.Errorf("upstream holds %d backups, want 1", n)
		}
	})

	conflicts := []struct {
		name string
		req  *recoveryv1.SecureDataRequest
	}{
		{"other plaintext", request("idem-1", "share two", "first share")},
		{"other metadata", request("idem-1", "share one", "second share")},
	}
	for _, tt := range conflicts {
		t.Run("conflict: "+tt.name, func(t *testing.T) {
			_, err := f.client.SecureData(as(t, walletAPI), tt.req)
			wantStatus(t, err, codes.AlreadyExists, service.ReasonIdempotencyKeyReused)
			if n := len(f.inspect.Backups(t)); n != 1 {
				t.Errorf("upstream holds %d backups, want 1", n)
			}
		})
	}

	t.Run("keys are scoped per caller", func(t *testing.T) {
		resp, err := f.client.SecureData(as(t, otherService), request("idem-1", "share one", "first share"))
		if err != nil {
			t.Fatalf("SecureData as another caller: %v", err)
		}
		if resp.GetBackup().GetBackupId() == first.GetBackup().GetBackupId() {
			t.Error("another caller's idempotency key returned this caller's backup")
		}
		if resp.GetBackup().GetStoredBy() != "other-service" {
			t.Errorf("stored_by = %q, want other-service", resp.GetBackup().GetStoredBy())
		}
		if n := len(f.inspect.Backups(t)); n != 2 {
			t.Errorf("upstream holds %d backups, want 2", n)
		}
	})

	t.Run("in progress", func(t *testing.T) {
		checksum := keycrypto.Checksum([]byte("busy share"))
		hash := service.DataRequestHash(testRequestHashKey, key.GetKeyId(), checksum, &recoveryv1.BackupMetadata{Description: "busy"})
		if _, err := f.store.ReserveBackup(t.Context(), walletAPI.name, "idem-busy", hash, service.Lease(testCallTimeout)); err != nil {
			t.Fatal(err)
		}
		_, err := f.client.SecureData(as(t, walletAPI), request("idem-busy", "busy share", "busy"))
		d := wantStatus(t, err, codes.Aborted, service.ReasonRequestInProgress)
		if d.retry.GetRetryDelay().AsDuration() <= 0 {
			t.Errorf("RetryInfo = %v, want a positive delay", d.retry)
		}
	})

	t.Run("a refused request frees its key", func(t *testing.T) {
		bad := seal(t, key, []byte("share three"))
		bad.ChecksumSha256 = keycrypto.Checksum([]byte("not share three"))
		_, err := f.client.SecureData(as(t, walletAPI), &recoveryv1.SecureDataRequest{
			Key:            &recoveryv1.SecureDataRequest_KeyId{KeyId: key.GetKeyId()},
			Payload:        &recoveryv1.SecureDataRequest_Sealed{Sealed: bad},
			IdempotencyKey: "idem-3",
		})
		wantStatus(t, err, codes.InvalidArgument, service.ReasonUpstreamRejectedRequest)
		resp, err := f.client.SecureData(as(t, walletAPI), request("idem-3", "share three", ""))
		if err != nil {
			t.Fatalf("SecureData with the freed key: %v", err)
		}
		if got := f.inspect.Recover(t, resp.GetBackup().GetBackupId()); string(got) != "share three" {
			t.Errorf("recovered %q", got)
		}
	})
}

func TestSecureDataLostResponse(t *testing.T) {
	// The upstream stores the backup but its answer is lost: the caller is
	// told the outcome is unknown (not "unavailable, retry"). A retry with
	// the same idempotency key stores it again (an extra copy is
	// acceptable, a lost backup is not); its answers are lost too, so it is
	// unknown again, and nothing is recorded.
	f := newFixture(t, fixtureOptions{wrap: loseResponse("/v1/partner/secure/data")})
	key := f.mustAssign("user-1", "org-1")
	req := func() *recoveryv1.SecureDataRequest {
		return &recoveryv1.SecureDataRequest{
			Key:            &recoveryv1.SecureDataRequest_KeyId{KeyId: key.GetKeyId()},
			Payload:        &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte("share")},
			IdempotencyKey: "lost-1",
		}
	}
	_, err := f.client.SecureData(t.Context(), req())
	wantStatus(t, err, codes.FailedPrecondition, service.ReasonBackupOutcomeUnknown)
	_, err = f.client.SecureData(t.Context(), req())
	wantStatus(t, err, codes.FailedPrecondition, service.ReasonBackupOutcomeUnknown)
	// The adapter retried its lost answers to its bound (the attempt and
	// two retries) on each call.
	if n := len(f.inspect.Backups(t)); n != 6 {
		t.Errorf("upstream holds %d backups, want 6 (the adapter's three attempts for each call)", n)
	}
	if n := len(f.registryBackups()); n != 0 {
		t.Errorf("registry recorded %d backups for an unknown outcome", n)
	}
}

const (
	secureDataPath     = "/v1/partner/secure/data"
	secureDataEndpoint = "POST " + secureDataPath
)

// TestSecureDataRetriedAfterAFault: a SecureData whose first upstream
// attempt fails (a 503, an answer lost after the backup was stored, a 200
// whose body is cut off) is retried under the SecureData policy: the call
// ends OK, the recorded backup exists upstream and holds the material, and
// an attempt that may have stored is counted as a possible extra copy.
func TestSecureDataRetriedAfterAFault(t *testing.T) {
	tests := []struct {
		kind string
		// stored: the failed attempt stored the backup (its answer was
		// lost), so the retry leaves a counted extra copy.
		stored bool
	}{
		{sandbox.Fault503, false},
		{sandbox.FaultResetAfter, true},
		{sandbox.FaultTruncated, true},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{
				faults:     map[string]float64{tt.kind: 0.5},
				faultPaths: []string{secureDataPath},
				faultSeed:  faultSeedFirstOnly,
			})
			key := f.mustAssign("user-1", "org-1")
			before := f.metrics(t)
			resp, err := f.client.SecureData(t.Context(), &recoveryv1.SecureDataRequest{
				Key:            &recoveryv1.SecureDataRequest_KeyId{KeyId: key.GetKeyId()},
				Payload:        &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte("retried share")},
				IdempotencyKey: "retried-" + tt.kind,
			})
			if err != nil {
				t.Fatalf("SecureData: %v", err)
			}
			after := f.metrics(t)
			if n := f.inspect.Faults(t).Injected[tt.kind]; n != 1 {
				t.Fatalf("the sandbox injected %d %s faults, want 1: the test did not exercise a retry", n, tt.kind)
			}
			id := resp.GetBackup().GetBackupId()
			if got := f.inspect.Recover(t, id); string(got) != "retried share" {
				t.Errorf("recovered %q", got)
			}
			recorded := f.registryBackups()
			if len(recorded) != 1 || recorded[0].BackupID != id {
				t.Errorf("registry holds %v, want only backup %s", recorded, id)
			}
			wantUpstream := 1
			if tt.stored {
				wantUpstream = 2 // the lost answer's copy and the retry's
			}
			if n := len(f.inspect.Backups(t)); n != wantUpstream {
				t.Errorf("upstream holds %d backups, want %d", n, wantUpstream)
			}
			endpoint := map[string]string{"endpoint": secureDataEndpoint}
			if d := after.counter(upstreamRetriesTotal, endpoint) - before.counter(upstreamRetriesTotal, endpoint); d != 1 {
				t.Errorf("%s grew by %v, want 1", upstreamRetriesTotal, d)
			}
			// NOTE: only where the failed attempt certainly stored: a 5xx
			// is counted too, as it may come after the upstream acted.
			if d := after.counter(upstreamDuplicatesTotal, endpoint) - before.counter(upstreamDuplicatesTotal, endpoint); tt.stored && d != 1 {
				t.Errorf("%s grew by %v, want 1", upstreamDuplicatesTotal, d)
			}
		})
	}
}

// TestSecureDataEveryAttemptTruncated: when every attempt's 200 is cut
// off, each attempt stored a copy upstream and recoveryd saw no backup_id:
// the caller is told the outcome is unknown (never OK without a record,
// never UPSTREAM_UNAVAILABLE, which says nothing was stored), after the
// attempt and its two retries, and the registry records nothing.
func TestSecureDataEveryAttemptTruncated(t *testing.T) {
	f := newFixture(t, fixtureOptions{
		faults:     map[string]float64{sandbox.FaultTruncated: 1},
		faultPaths: []string{secureDataPath},
	})
	key := f.mustAssign("user-1", "org-1")
	_, err := f.client.SecureData(t.Context(), &recoveryv1.SecureDataRequest{
		Key:     &recoveryv1.SecureDataRequest_KeyId{KeyId: key.GetKeyId()},
		Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte("cut off")},
	})
	wantStatus(t, err, codes.FailedPrecondition, service.ReasonBackupOutcomeUnknown)
	if n := f.inspect.Faults(t).Injected[sandbox.FaultTruncated]; n != 3 {
		t.Errorf("the sandbox injected %d faults, want 3 (the attempt and 2 retries)", n)
	}
	if n := len(f.inspect.Backups(t)); n != 3 {
		t.Errorf("upstream holds %d backups, want 3", n)
	}
	if n := len(f.registryBackups()); n != 0 {
		t.Errorf("registry recorded %d backups", n)
	}
}
