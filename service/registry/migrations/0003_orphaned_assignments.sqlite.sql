-- An assignment whose answer was lost and whose retry met the upstream's
-- 409 is 'orphaned': the upstream holds the key our own lost attempt made.
-- It is an operator case like 'elsewhere', but with another cause, so it
-- gets its own state.
--
-- SQLite cannot alter a CHECK, so keys is rebuilt. NOTE: backups is rebuilt
-- with it: this migration runs in a transaction with foreign keys enforced
-- (PRAGMA foreign_keys cannot change inside one), and dropping keys while
-- backups references it would fail. Both copies are made first, the old
-- child then the old parent are dropped (nothing references them any more),
-- and renaming keys_new to keys rewrites backups_new's reference to match.
-- Column order is unchanged, so SELECT * copies row for row.
CREATE TABLE keys_new (
    id                INTEGER PRIMARY KEY,
    user_identifier   TEXT NOT NULL,
    customer_id       TEXT NOT NULL,
    customer_name     TEXT NOT NULL DEFAULT '',
    package_id        TEXT NOT NULL DEFAULT '',
    package_name      TEXT NOT NULL DEFAULT '',
    key_environment   TEXT NOT NULL CHECK (key_environment IN ('HOT', 'COLD')),
    caller            TEXT NOT NULL DEFAULT '',
    state             TEXT NOT NULL
                      CHECK (state IN ('pending', 'assigned', 'unknown', 'untrusted', 'elsewhere', 'orphaned')),
    reason            TEXT NOT NULL DEFAULT '',
    reservation_token TEXT UNIQUE,
    reserved_at       TEXT NOT NULL,
    key_id            TEXT UNIQUE,
    public_key_hex    TEXT UNIQUE
                      CHECK (public_key_hex NOT GLOB '*[^0-9a-f]*' AND length(public_key_hex) % 2 = 0),
    fingerprint       TEXT
                      CHECK (fingerprint NOT GLOB '*[^0-9a-f]*' AND length(fingerprint) = 64),
    assigned_at       TEXT,
    CONSTRAINT keys_pair_unique UNIQUE (user_identifier, customer_id),
    CONSTRAINT keys_token_iff_pending CHECK ((state = 'pending') = (reservation_token IS NOT NULL)),
    CONSTRAINT keys_key_iff_assigned CHECK ((state = 'assigned') = (
        key_id IS NOT NULL AND public_key_hex IS NOT NULL AND fingerprint IS NOT NULL AND assigned_at IS NOT NULL))
) STRICT;

INSERT INTO keys_new SELECT * FROM keys;

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
    key_id            TEXT REFERENCES keys_new (key_id),
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
        checksum_sha256 IS NOT NULL AND size_bytes IS NOT NULL AND stored_at IS NOT NULL))
) STRICT;

INSERT INTO backups_new SELECT * FROM backups;

DROP TABLE backups;
DROP TABLE keys;
ALTER TABLE keys_new RENAME TO keys;
ALTER TABLE backups_new RENAME TO backups;

CREATE INDEX keys_by_assigned_at ON keys (assigned_at DESC, key_id DESC) WHERE state = 'assigned';
CREATE INDEX keys_by_customer ON keys (customer_id, assigned_at DESC, key_id DESC) WHERE state = 'assigned';
CREATE INDEX backups_by_stored_at ON backups (stored_at DESC, backup_id DESC) WHERE state = 'stored';
CREATE INDEX backups_by_key ON backups (key_id, stored_at DESC, backup_id DESC) WHERE state = 'stored';
CREATE INDEX backups_by_customer ON backups (customer_id, stored_at DESC, backup_id DESC) WHERE state = 'stored';
