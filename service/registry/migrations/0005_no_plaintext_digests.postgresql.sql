-- Nothing derived from a plaintext stays in the registry: a SHA-256 of a
-- low-entropy secret (a seed phrase, a key share) can be brute-forced
-- offline by whoever reads the database.
--
-- A data backup's checksum is its plaintext's (older rows) or of the
-- ciphertext recoveryd made (rows since b9cf7cd); either way the registry
-- keeps none now: only a file backup keeps the SHA-256 of the bytes sent
-- upstream. Every idempotency request hash recorded so far was a bare
-- SHA-256 over, among others, the plaintext's checksum; it becomes
-- 'erased', which the registry treats as matching any request with the
-- same idempotency key (new ones are HMACs under a server-side key).
--
-- NOTE: PostgreSQL keeps the old row versions until VACUUM reclaims them:
-- the registry runs VACUUM FULL backups right after this migration
-- (migrate.go), outside its transaction.
ALTER TABLE backups DROP CONSTRAINT backups_backup_iff_stored;
UPDATE backups SET checksum_sha256 = NULL WHERE backup_type = 'data';
UPDATE backups SET request_hash = 'erased' WHERE request_hash IS NOT NULL;
ALTER TABLE backups ADD CONSTRAINT backups_backup_iff_stored CHECK ((state = 'stored') = (
    backup_id IS NOT NULL AND backup_type IS NOT NULL AND key_id IS NOT NULL AND
    size_bytes IS NOT NULL AND stored_at IS NOT NULL));
ALTER TABLE backups ADD CONSTRAINT backups_checksum_only_files
    CHECK ((backup_type = 'file') = (checksum_sha256 IS NOT NULL));
