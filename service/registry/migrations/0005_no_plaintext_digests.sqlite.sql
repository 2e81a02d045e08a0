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
-- SQLite cannot alter a CHECK, so backups is rebuilt (nothing references
-- it). The writer connection runs with secure_delete on, so the dropped
-- table's pages are zeroed, and the registry VACUUMs and truncates the WAL
-- right after this migration (migrate.go), so the old values are gone from
-- the file, not just unreachable.
CREATE TABLE backups_new (
    id                INTEGER PRIMARY KEY,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'stored', 'unknown')),
    reason            TEXT NOT NULL DEFAULT '',
    idempotency_scope TEXT,
    idempotency_key   TEXT,
    request_hash      TEXT,
    reservation_token TEXT UNIQUE,
    reserved_at       TEXT,
    backup_id         TEXT UNIQUE,
    backup_type       TEXT CHECK (backup_type IN ('data', 'file')),
    key_id            TEXT REFERENCES keys (key_id),
    customer_id       TEXT NOT NULL DEFAULT '',
    package_id        TEXT NOT NULL DEFAULT '',
    checksum_sha256   TEXT
                      CHECK (checksum_sha256 NOT GLOB '*[^0-9a-f]*' AND length(checksum_sha256) = 64),
    size_bytes        INTEGER CHECK (size_bytes >= 0),
    description       TEXT NOT NULL DEFAULT '',
    content_type      TEXT NOT NULL DEFAULT '',
    original_filename TEXT NOT NULL DEFAULT '',
    caller            TEXT NOT NULL DEFAULT '',
    stored_at         TEXT,
    CONSTRAINT backups_idempotency_unique UNIQUE (idempotency_scope, idempotency_key),
    CONSTRAINT backups_idempotency_complete CHECK (
        (idempotency_key IS NULL) = (idempotency_scope IS NULL) AND
        (idempotency_key IS NULL) = (request_hash IS NULL) AND
        (idempotency_key IS NULL) = (reserved_at IS NULL)),
    CONSTRAINT backups_reservation_needs_key CHECK (state = 'stored' OR idempotency_key IS NOT NULL),
    CONSTRAINT backups_token_iff_pending CHECK ((state = 'pending') = (reservation_token IS NOT NULL)),
    CONSTRAINT backups_backup_iff_stored CHECK ((state = 'stored') = (
        backup_id IS NOT NULL AND backup_type IS NOT NULL AND key_id IS NOT NULL AND
        size_bytes IS NOT NULL AND stored_at IS NOT NULL)),
    CONSTRAINT backups_checksum_only_files CHECK ((backup_type = 'file') = (checksum_sha256 IS NOT NULL))
) STRICT;

INSERT INTO backups_new (id, state, reason, idempotency_scope, idempotency_key, request_hash,
    reservation_token, reserved_at, backup_id, backup_type, key_id, customer_id, package_id,
    checksum_sha256, size_bytes, description, content_type, original_filename, caller, stored_at)
SELECT id, state, reason, idempotency_scope, idempotency_key,
    CASE WHEN request_hash IS NULL THEN NULL ELSE 'erased' END,
    reservation_token, reserved_at, backup_id, backup_type, key_id, customer_id, package_id,
    CASE WHEN backup_type = 'file' THEN checksum_sha256 ELSE NULL END,
    size_bytes, description, content_type, original_filename, caller, stored_at
FROM backups;

DROP TABLE backups;
ALTER TABLE backups_new RENAME TO backups;

CREATE INDEX backups_by_stored_at ON backups (stored_at DESC, backup_id DESC) WHERE state = 'stored';
CREATE INDEX backups_by_key ON backups (key_id, stored_at DESC, backup_id DESC) WHERE state = 'stored';
CREATE INDEX backups_by_customer ON backups (customer_id, stored_at DESC, backup_id DESC) WHERE state = 'stored';
