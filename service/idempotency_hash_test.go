package service_test

import (
	"database/sql"
	"testing"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service"
)

// TestNothingPlaintextDerivedIsStored reads the registry's own row of a
// SecureData backup, in a real SQLite file and a real PostgreSQL: it holds
// no checksum, and its idempotency request hash is the HMAC under the
// server's key (a different key gives another value), never a digest
// anyone could recompute from a guessed plaintext.
func TestNothingPlaintextDerivedIsStored(t *testing.T) {
	for _, b := range receiptBackends {
		t.Run(b.name, func(t *testing.T) {
			store, db := b.open(t)
			f := newFixture(t, fixtureOptions{store: store})
			key := f.mustAssign("alice", "acme")
			secret := []byte("correct horse battery staple")
			meta := &recoveryv1.BackupMetadata{Description: "seed phrase"}
			resp, err := f.client.SecureData(t.Context(), &recoveryv1.SecureDataRequest{
				Key:            &recoveryv1.SecureDataRequest_KeyId{KeyId: key.GetKeyId()},
				Payload:        &recoveryv1.SecureDataRequest_Plaintext{Plaintext: secret},
				Metadata:       meta,
				IdempotencyKey: "idem-hash",
			})
			if err != nil {
				t.Fatal(err)
			}
			sum := keycrypto.Checksum(secret)
			if resp.GetBackup().GetChecksumSha256() != sum {
				t.Errorf("the sender's answer carries %q, want the plaintext's checksum %s", resp.GetBackup().GetChecksumSha256(), sum)
			}
			var checksum sql.NullString
			var hash string
			if err := db.QueryRowContext(t.Context(),
				`SELECT checksum_sha256, request_hash FROM backups WHERE idempotency_key = 'idem-hash'`).Scan(&checksum, &hash); err != nil {
				t.Fatal(err)
			}
			if checksum.Valid {
				t.Errorf("the registry keeps checksum %s for a data backup, want none", checksum.String)
			}
			if want := service.DataRequestHash(testRequestHashKey, key.GetKeyId(), sum, meta); hash != want {
				t.Errorf("request_hash = %s, want the HMAC under the server's key %s", hash, want)
			}
			if other := service.DataRequestHash([]byte("another server's key, 32+ bytes long"), key.GetKeyId(), sum, meta); hash == other {
				t.Error("request_hash does not depend on the server's key: it can be recomputed from a guessed plaintext")
			}
		})
	}
}
