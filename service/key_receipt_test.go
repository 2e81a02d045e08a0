package service_test

import (
	"database/sql"
	"log/slog"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to change rows behind the registry's back
	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/service/registry/registrytest"
)

// receiptBackend is a real registry and a connection of its own to the
// same database, to change a row as an attacker with database access would.
type receiptBackend struct {
	name string
	open func(t *testing.T) (*registry.Store, *sql.DB)
}

var receiptBackends = []receiptBackend{
	{"sqlite", func(t *testing.T) (*registry.Store, *sql.DB) {
		path := filepath.Join(t.TempDir(), "registry.db")
		store, err := registry.OpenSQLite(t.Context(), path, registry.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close() })
		return store, openDB(t, "sqlite", path+"?_pragma=busy_timeout(5000)")
	}},
	{"postgresql", func(t *testing.T) (*registry.Store, *sql.DB) {
		url := registrytest.Postgres(t)
		store, err := registry.OpenPostgres(t.Context(), url, registry.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close() })
		return store, openDB(t, "pgx", url)
	}},
}

func openDB(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func mustExec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// TestSwappedKeyIsRefused: a key whose public key was swapped in the
// registry's database (a real SQLite file, a real PostgreSQL) for another
// valid RSA-4096 key, fingerprint and all, is refused by every flow that
// would use or return it (KEY_RECEIPT_INVALID), logged at ERROR and
// counted; nothing reaches the upstream. So is a key recorded without a
// receipt, as before migration 0007.
func TestSwappedKeyIsRefused(t *testing.T) {
	for _, b := range receiptBackends {
		t.Run(b.name, func(t *testing.T) {
			store, db := b.open(t)
			f := newFixture(t, fixtureOptions{store: store})
			key := f.mustAssign("alice", "acme")
			other := f.mustAssign("bob", "acme")

			// Before: the key verifies and carries its receipt.
			got, err := f.client.GetKey(t.Context(), &recoveryv1.GetKeyRequest{KeyId: key.GetKeyId()})
			if err != nil {
				t.Fatalf("GetKey before the swap: %v", err)
			}
			r := got.GetKey().GetReceipt()
			if r.GetSignature() == "" || r.GetSignedPayload() == "" || r.GetSigningKeyId() == "" {
				t.Fatalf("GetKey receipt = %v, want signature, signed payload and signing key id", r)
			}
			if key.GetReceipt().GetSignature() != r.GetSignature() {
				t.Errorf("AssignKey's receipt %v differs from GetKey's %v", key.GetReceipt(), r)
			}

			attacker, err := keycrypto.PublicKeyFromPrivate(testkeys.RSA(testkeys.RSACount - 1))
			if err != nil {
				t.Fatal(err)
			}
			mustExec(t, db, `UPDATE keys SET public_key_hex = $1, fingerprint = $2 WHERE key_id = $3`,
				attacker.Hex(), attacker.Fingerprint(), key.GetKeyId())
			// A key recorded before receipts were kept.
			mustExec(t, db, `UPDATE keys SET signature = NULL, signed_payload = NULL, signing_key_id = NULL WHERE key_id = $1`,
				other.GetKeyId())

			before := f.metrics(t)
			backupsBefore := len(f.inspect.Backups(t))
			for _, k := range []struct {
				id, check string
			}{{key.GetKeyId(), "binding_mismatch"}, {other.GetKeyId(), "missing"}} {
				t.Run(k.check, func(t *testing.T) {
					_, err := f.client.GetKey(t.Context(), &recoveryv1.GetKeyRequest{KeyId: k.id})
					wantStatus(t, err, codes.FailedPrecondition, service.ReasonKeyReceiptInvalid)

					_, err = f.client.SecureData(t.Context(), &recoveryv1.SecureDataRequest{
						Key:     &recoveryv1.SecureDataRequest_KeyId{KeyId: k.id},
						Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte("correct horse battery staple")},
					})
					wantStatus(t, err, codes.FailedPrecondition, service.ReasonKeyReceiptInvalid)

					file := make([]byte, 20000)
					_, err = f.sendFile(t.Context(), append([]*recoveryv1.SecureFileRequest{headerMsg(&recoveryv1.SecureFileHeader{
						Key: &recoveryv1.SecureFileHeader_KeyId{KeyId: k.id},
					})}, chunksOf(file, 16384)...))
					wantStatus(t, err, codes.FailedPrecondition, service.ReasonKeyReceiptInvalid)

					line := logLine(f.logs, "recorded key does not verify against its receipt: key refused", k.id)
					if line == nil || line["level"] != "ERROR" || line["check"] != k.check {
						t.Errorf("log line = %v, want an ERROR naming key_id %s and check %s", line, k.id, k.check)
					}
				})
			}
			// By the swapped public key itself: the row is found, and refused.
			_, err = f.client.SecureData(t.Context(), &recoveryv1.SecureDataRequest{
				Key:     &recoveryv1.SecureDataRequest_PublicKeyHex{PublicKeyHex: attacker.Hex()},
				Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte("correct horse battery staple")},
			})
			wantStatus(t, err, codes.FailedPrecondition, service.ReasonKeyReceiptInvalid)
			_, err = f.client.AssignKey(t.Context(), assignRequest("alice", "acme"))
			wantStatus(t, err, codes.FailedPrecondition, service.ReasonKeyReceiptInvalid)

			if n := len(f.inspect.Backups(t)); n != backupsBefore {
				t.Errorf("the upstream holds %d backups, had %d: something was stored to a refused key", n, backupsBefore)
			}
			after := f.metrics(t)
			for result, want := range map[string]float64{"binding_mismatch": 5, "missing": 3} {
				labels := map[string]string{"result": result}
				if d := after.counter("recovery_key_receipt_checks_total", labels) - before.counter("recovery_key_receipt_checks_total", labels); d != want {
					t.Errorf("recovery_key_receipt_checks_total{result=%q} rose by %v, want %v", result, d, want)
				}
			}
		})
	}
}

// TestVerifiedKeyIsReusedForItsOwnKey: once a key's receipt has verified,
// its later uses are answered from the receipt cache (the parsed key and
// its PEM, parsed once), and each use still gets its own key: the emulator
// decrypts every SecureData with the private key of the key named, and
// GetKey and a repeat AssignKey return each key's own PEM.
func TestVerifiedKeyIsReusedForItsOwnKey(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	keys := []*recoveryv1.RecoveryKey{f.mustAssign("alice", "acme"), f.mustAssign("bob", "acme")}
	before := f.metrics(t)
	for round := range 2 {
		for i, k := range keys {
			wantPEM, err := keycrypto.HexToPEM(k.GetPublicKeyHex())
			if err != nil {
				t.Fatal(err)
			}
			if k.GetPublicKeyPem() != wantPEM {
				t.Errorf("AssignKey %d: PEM is not its own key's", i)
			}
			if _, err := f.client.SecureData(t.Context(), &recoveryv1.SecureDataRequest{
				Key:     &recoveryv1.SecureDataRequest_KeyId{KeyId: k.GetKeyId()},
				Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: []byte("correct horse battery staple")},
			}); err != nil {
				t.Fatalf("round %d, key %d: SecureData: %v", round, i, err)
			}
			got, err := f.client.GetKey(t.Context(), &recoveryv1.GetKeyRequest{KeyId: k.GetKeyId()})
			if err != nil || got.GetKey().GetPublicKeyPem() != wantPEM {
				t.Errorf("round %d, key %d: GetKey PEM is not its own key's (err %v)", round, i, err)
			}
			user := []string{"alice", "bob"}[i]
			again, err := f.client.AssignKey(t.Context(), assignRequest(user, "acme"))
			if err != nil || !again.GetAlreadyAssigned() || again.GetKey().GetPublicKeyPem() != wantPEM {
				t.Errorf("round %d, key %d: repeat AssignKey = %v, %v; want its own PEM", round, i, again, err)
			}
		}
	}
	after := f.metrics(t)
	labels := map[string]string{"result": "cached"}
	// Every use but none is a cache hit: both keys were verified when
	// AssignKey recorded them.
	if d := after.counter("recovery_key_receipt_checks_total", labels) - before.counter("recovery_key_receipt_checks_total", labels); d != 12 {
		t.Errorf("recovery_key_receipt_checks_total{result=\"cached\"} rose by %v, want 12 (2 rounds x 2 keys x 3 uses)", d)
	}
}
