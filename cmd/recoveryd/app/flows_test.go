package app

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
)

// TestEndToEndFlows walks every RPC's happy path through the real server,
// adapter, registry and emulator, and checks each result against what the
// upstream actually stored.
func TestEndToEndFlows(t *testing.T) {
	log, logs := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	srv := startReady(t, remoteConfig(t, up, t.TempDir()), log, Options{})
	ctx := testCtx(t)
	c := srv.client

	// AssignKey: a verified key whose PEM, hex and fingerprint agree.
	resp, err := c.AssignKey(ctx, assignKeyRequest("user-1", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	if err != nil {
		t.Fatalf("AssignKey: %v", err)
	}
	key := resp.GetKey()
	if resp.GetAlreadyAssigned() {
		t.Error("first AssignKey says already_assigned")
	}
	pub, err := keycrypto.ParsePublicKeyHex(key.GetPublicKeyHex())
	if err != nil {
		t.Fatalf("public_key_hex: %v", err)
	}
	if key.GetPublicKeyPem() != pub.PEM() || key.GetFingerprintSha256() != pub.Fingerprint() {
		t.Errorf("PEM or fingerprint do not match public_key_hex:\n%s\n%s", key.GetPublicKeyPem(), key.GetFingerprintSha256())
	}
	want := &recoveryv1.RecoveryKey{
		KeyId:          key.GetKeyId(),
		UserIdentifier: "user-1",
		KeyEnvironment: recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT,
		Organisation:   &recoveryv1.Organisation{CustomerId: testCustomerID, CustomerName: testCustomerName},
		Package:        &recoveryv1.Package{PackageId: testPackageID, PackageName: testPackageName},
	}
	if diff := cmp.Diff(want, key, protocmp.Transform(),
		protocmp.IgnoreFields(&recoveryv1.RecoveryKey{}, "public_key_hex", "public_key_pem", "fingerprint_sha256", "assigned_at", "receipt")); diff != "" {
		t.Errorf("AssignKey key (-want +got):\n%s", diff)
	}
	if r := key.GetReceipt(); r.GetSignature() == "" || r.GetSignedPayload() == "" {
		t.Errorf("AssignKey receipt = %v, want the enclave signature and its signed payload", r)
	}
	upstreamKeys := up.Inspect.Keys(t)
	if len(upstreamKeys) != 1 || upstreamKeys[0].KeyID != key.GetKeyId() {
		t.Fatalf("upstream keys = %+v, want just %s", upstreamKeys, key.GetKeyId())
	}

	// A repeat with the same terms is the recorded key, with no upstream call.
	again, err := c.AssignKey(ctx, assignKeyRequest("user-1", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	if err != nil {
		t.Fatalf("repeat AssignKey: %v", err)
	}
	if !again.GetAlreadyAssigned() || !proto.Equal(again.GetKey(), key) {
		t.Errorf("repeat AssignKey = %v, want the same key, already_assigned", again)
	}
	// A repeat with other terms is refused, naming the reason.
	_, err = c.AssignKey(ctx, assignKeyRequest("user-1", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_COLD))
	wantStatus(t, err, codes.AlreadyExists, "ASSIGNED_WITH_DIFFERENT_TERMS")
	if n := len(up.Inspect.Keys(t)); n != 1 {
		t.Errorf("upstream holds %d keys after the repeats, want 1", n)
	}

	// GetKey returns the record.
	got, err := c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: key.GetKeyId()})
	if err != nil {
		t.Fatalf("GetKey: %v", err)
	}
	if !proto.Equal(got.GetKey(), key) {
		t.Errorf("GetKey = %v, want %v", got.GetKey(), key)
	}

	// SecureData with plaintext: the service encrypts; the enclave recovers
	// exactly the plaintext.
	secret := []byte("correct horse battery staple orbit lunar ember")
	data, err := c.SecureData(ctx, secureDataByKeyID(key.GetKeyId(), bytes.Clone(secret)))
	if err != nil {
		t.Fatalf("SecureData(plaintext): %v", err)
	}
	checkBackup(t, data.GetBackup(), key, recoveryv1.BackupType_BACKUP_TYPE_DATA, keycrypto.Checksum(secret), keycrypto.CiphertextLen)
	if got := up.Inspect.Recover(t, data.GetBackup().GetBackupId()); !bytes.Equal(got, secret) {
		t.Errorf("upstream recovered %q, want %q", got, secret)
	}

	// SecureData sealed by the caller, naming the key by its hex.
	sealedSecret := []byte("share 2 of 3: 8f1c0b7e")
	ciphertext, err := keycrypto.Encrypt(rand.Reader, pub, sealedSecret)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := c.SecureData(ctx, &recoveryv1.SecureDataRequest{
		Key: &recoveryv1.SecureDataRequest_PublicKeyHex{PublicKeyHex: key.GetPublicKeyHex()},
		Payload: &recoveryv1.SecureDataRequest_Sealed{Sealed: &recoveryv1.SealedPayload{
			Ciphertext: ciphertext, ChecksumSha256: keycrypto.Checksum(sealedSecret),
		}},
	})
	if err != nil {
		t.Fatalf("SecureData(sealed): %v", err)
	}
	checkBackup(t, sealed.GetBackup(), key, recoveryv1.BackupType_BACKUP_TYPE_DATA, keycrypto.Checksum(sealedSecret), keycrypto.CiphertextLen)
	if got := up.Inspect.Recover(t, sealed.GetBackup().GetBackupId()); !bytes.Equal(got, sealedSecret) {
		t.Errorf("upstream recovered %q, want %q", got, sealedSecret)
	}

	// SecureFile: full-size 1 MiB chunks fit the message limit; the upstream
	// holds exactly the bytes sent.
	file := make([]byte, 2<<20+12345)
	if _, err := rand.Read(file); err != nil {
		t.Fatal(err)
	}
	fileSum := sha256.Sum256(file)
	header := fileHeader(key.GetKeyId())
	size := int64(len(file))
	header.GetHeader().SizeBytes = &size
	header.GetHeader().Sha256 = hex.EncodeToString(fileSum[:])
	stored, err := sendFile(ctx, c, header, file[:1<<20], file[1<<20:2<<20], file[2<<20:])
	if err != nil {
		t.Fatalf("SecureFile: %v", err)
	}
	checkBackup(t, stored.GetBackup(), key, recoveryv1.BackupType_BACKUP_TYPE_FILE, hex.EncodeToString(fileSum[:]), size)
	if got := up.Inspect.Content(t, stored.GetBackup().GetBackupId()); !bytes.Equal(got, file) {
		t.Errorf("upstream stored %d bytes that differ from the %d sent", len(got), len(file))
	}

	// ListKeys and ListBackups read the registry, newest first.
	keys, err := c.ListKeys(ctx, &recoveryv1.ListKeysRequest{CustomerId: testCustomerID})
	if err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	if len(keys.GetKeys()) != 1 || !proto.Equal(keys.GetKeys()[0], key) || keys.GetNextPageToken() != "" {
		t.Errorf("ListKeys = %v, want just the assigned key", keys)
	}
	backups, err := c.ListBackups(ctx, &recoveryv1.ListBackupsRequest{KeyId: key.GetKeyId(), PageSize: 2})
	if err != nil {
		t.Fatalf("ListBackups: %v", err)
	}
	rest, err := c.ListBackups(ctx, &recoveryv1.ListBackupsRequest{KeyId: key.GetKeyId(), PageSize: 2, PageToken: backups.GetNextPageToken()})
	if err != nil {
		t.Fatalf("ListBackups page 2: %v", err)
	}
	var listed []string
	for _, b := range append(backups.GetBackups(), rest.GetBackups()...) {
		listed = append(listed, b.GetBackupId())
	}
	wantListed := []string{stored.GetBackup().GetBackupId(), sealed.GetBackup().GetBackupId(), data.GetBackup().GetBackupId()}
	if diff := cmp.Diff(wantListed, listed); diff != "" || rest.GetNextPageToken() != "" {
		t.Errorf("ListBackups ids (-want +got):\n%s (next token %q)", diff, rest.GetNextPageToken())
	}
	if !proto.Equal(backups.GetBackups()[0], stored.GetBackup()) {
		t.Errorf("ListBackups[0] = %v, want %v", backups.GetBackups()[0], stored.GetBackup())
	}
	if n := len(up.Inspect.Backups(t)); n != 3 {
		t.Errorf("upstream holds %d backups, want 3", n)
	}

	// Plaintext and the upstream token never reach the logs.
	for _, secretText := range []string{string(secret), string(sealedSecret), "sandbox-partner-token"} {
		if bytes.Contains([]byte(logs.String()), []byte(secretText)) {
			t.Errorf("the logs contain the secret %q", secretText)
		}
	}
}

// checkBackup checks what every backup response must say.
func checkBackup(t *testing.T, b *recoveryv1.Backup, key *recoveryv1.RecoveryKey, typ recoveryv1.BackupType, checksum string, size int64) {
	t.Helper()
	if b.GetBackupId() == "" || b.GetStoredAt() == nil {
		t.Errorf("backup without id or stored_at: %v", b)
	}
	if b.GetBackupType() != typ || b.GetKeyId() != key.GetKeyId() || b.GetChecksumSha256() != checksum || b.GetSizeBytes() != size ||
		b.GetCustomerId() != key.GetOrganisation().GetCustomerId() || b.GetPackageId() != key.GetPackage().GetPackageId() {
		t.Errorf("backup = %v, want type %s, key %s, checksum %s, size %d, filed under %s/%s",
			b, typ, key.GetKeyId(), checksum, size, key.GetOrganisation().GetCustomerId(), key.GetPackage().GetPackageId())
	}
}
