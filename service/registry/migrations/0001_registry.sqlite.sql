-- The registry's first schema (SQLite). Times are UTC text with microseconds
-- (2006-01-02T15:04:05.000000Z), so text order is time order.

-- keys: one row per (user_identifier, customer_id). ReserveAssignment inserts
-- it pending before the upstream call; CompleteAssignment records the key,
-- ReleaseAssignment deletes the row, FailAssignment parks it for operators.
CREATE TABLE keys (
    id                INTEGER PRIMARY KEY,
    user_identifier   TEXT NOT NULL,
    customer_id       TEXT NOT NULL,
    customer_name     TEXT NOT NULL DEFAULT '',
    package_id        TEXT NOT NULL DEFAULT '',
    package_name      TEXT NOT NULL DEFAULT '',
    key_environment   TEXT NOT NULL CHECK (key_environment IN ('HOT', 'COLD')),
    caller            TEXT NOT NULL DEFAULT '',
    state             TEXT NOT NULL
                      CHECK (state IN ('pending', 'assigned', 'unknown', 'untrusted', 'elsewhere')),
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

CREATE INDEX keys_by_assigned_at ON keys (assigned_at DESC, key_id DESC) WHERE state = 'assigned';
CREATE INDEX keys_by_customer ON keys (customer_id, assigned_at DESC, key_id DESC) WHERE state = 'assigned';

-- backups: one row per upstream-confirmed backup (state stored), plus the
-- idempotency reservations of requests that carry an idempotency key
-- (pending while upstream is called, unknown when its outcome was lost).
-- Never plaintext or ciphertext.
CREATE TABLE backups (
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
        checksum_sha256 IS NOT NULL AND size_bytes IS NOT NULL AND stored_at IS NOT NULL))
) STRICT;

CREATE INDEX backups_by_stored_at ON backups (stored_at DESC, backup_id DESC) WHERE state = 'stored';
CREATE INDEX backups_by_key ON backups (key_id, stored_at DESC, backup_id DESC) WHERE state = 'stored';
CREATE INDEX backups_by_customer ON backups (customer_id, stored_at DESC, backup_id DESC) WHERE state = 'stored';
