package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// TestMigrationErasesPlaintextDigests: a registry written by an older
// recoveryd holds a data backup's plaintext checksum and request hashes
// derived from it; migration 0005 leaves neither, in the tables nor (on
// SQLite) anywhere in the database's files, keeps a file backup's checksum,
// and a repeat of an idempotency key recorded before it still finds its
// backup.
func TestMigrationErasesPlaintextDigests(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		ctx := context.Background()
		before := fstest.MapFS{}
		for _, name := range embeddedMigrationNames(t, db.backend) {
			if name >= "0005_" {
				continue
			}
			body, err := fs.ReadFile(embeddedMigrations, name)
			if err != nil {
				t.Fatal(err)
			}
			before[name] = &fstest.MapFile{Data: body}
		}
		digest := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
		plaintextSum := digest("correct horse battery staple")
		oldRequestHash := digest("4:data;" + plaintextSum)
		fileSum := digest("the encrypted file")

		old := db.mustOpen(t, withMigrations(before))
		key := insertOldKey(t, old, terms(8, 1), testKey(81))
		// NOTE: as the older recoveryd wrote them, by SQL: today's
		// RecordBackup refuses a data backup with a checksum.
		insert := `INSERT INTO backups (state, idempotency_scope, idempotency_key, request_hash, reserved_at,
				backup_id, backup_type, key_id, customer_id, package_id, checksum_sha256, size_bytes, caller, stored_at)
			VALUES ('stored', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 512, 'wallet-api', $4)`
		now := old.dialect.timeArg(old.now())
		if _, err := old.write.ExecContext(ctx, insert, "wallet-api", "idem-data", oldRequestHash, now,
			"backup-data", "data", key.KeyID, key.CustomerID, key.PackageID, plaintextSum); err != nil {
			t.Fatal(err)
		}
		if _, err := old.write.ExecContext(ctx, insert, "wallet-api", "idem-file", digest("file request"), now,
			"backup-file", "file", key.KeyID, key.CustomerID, key.PackageID, fileSum); err != nil {
			t.Fatal(err)
		}
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}
		if db.sqlitePath != "" && !bytes.Contains(readSQLiteFiles(t, db.sqlitePath), []byte(plaintextSum)) {
			t.Fatal("the plaintext checksum is not in the SQLite files before the migration: the check below would prove nothing")
		}

		s := db.mustOpen(t)
		list, _, err := s.ListBackups(ctx, BackupFilter{KeyID: key.KeyID}, Page{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, b := range list {
			got[b.BackupID] = b.Checksum
		}
		if len(got) != 2 || got["backup-data"] != "" || got["backup-file"] != fileSum {
			t.Errorf("checksums after the migration = %v; want none for backup-data, %s for backup-file", got, fileSum)
		}
		if hashes := queryStrings(t, s, `SELECT DISTINCT request_hash FROM backups`); len(hashes) != 1 || hashes[0] != erasedRequestHash {
			t.Errorf("request hashes after the migration = %v; want only %q", hashes, erasedRequestHash)
		}
		res, err := s.ReserveBackup(ctx, "wallet-api", "idem-data", "an HMAC of the repeat", time.Minute)
		if err != nil || res.State != BackupRecorded || res.Backup.BackupID != "backup-data" {
			t.Errorf("repeat of an idempotency key recorded before the migration = %+v, %v; want backup-data recorded", res, err)
		}
		// The relaxed constraint still holds a file backup to its checksum.
		if _, err := s.write.ExecContext(ctx, `UPDATE backups SET checksum_sha256 = NULL WHERE backup_id = 'backup-file'`); err == nil {
			t.Error("a file backup without a checksum was accepted")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if db.sqlitePath != "" {
			files := readSQLiteFiles(t, db.sqlitePath)
			for name, v := range map[string]string{"plaintext checksum": plaintextSum, "request hash": oldRequestHash} {
				if bytes.Contains(files, []byte(v)) {
					t.Errorf("the SQLite files still hold the %s %s after the migration", name, v)
				}
			}
			if !bytes.Contains(files, []byte(fileSum)) {
				t.Error("the file backup's checksum is gone from the SQLite files: the search above would find nothing anyway")
			}
		}
	})
}

// readSQLiteFiles is the content of a SQLite database's files: the main
// file, its WAL and its shared-memory index.
func readSQLiteFiles(t *testing.T, path string) []byte {
	t.Helper()
	var all []byte
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// insertOldKey records k for tm by SQL, in the columns every schema
// version has, as a registry older than the running code would hold it
// (today's CompleteAssignment writes columns it may lack). It returns the
// key as GetKey reads it back: without a receipt.
func insertOldKey(t *testing.T, s *Store, tm KeyTerms, k Key) Key {
	t.Helper()
	now := s.now()
	k.KeyTerms, k.AssignedAt, k.Receipt = tm, now, Receipt{}
	k.PublicKeyHex = strings.ToLower(k.PublicKeyHex)
	_, err := s.write.ExecContext(context.Background(), `
		INSERT INTO keys (user_identifier, customer_id, customer_name, package_id, package_name,
			key_environment, caller, state, reserved_at, key_id, public_key_hex, fingerprint, assigned_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 'assigned', $8, $9, $10, $11, $8)`,
		tm.UserIdentifier, tm.CustomerID, tm.CustomerName, tm.PackageID, tm.PackageName,
		tm.KeyEnvironment, tm.Caller, s.dialect.timeArg(now), k.KeyID, k.PublicKeyHex, k.Fingerprint)
	if err != nil {
		t.Fatalf("inserting key %s: %v", k.KeyID, err)
	}
	return k
}
