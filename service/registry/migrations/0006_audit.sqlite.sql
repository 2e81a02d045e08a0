-- The audit trail: one row per RPC (kind 'call') and the rows that tie the
-- per-writer chains together ('checkpoint': the heads of the other chains;
-- 'prune': where each chain now starts after a retention prune). Each
-- recoveryd process appends to its own chain (writer_id), numbered by seq;
-- each row holds the SHA-256 of the previous row of its chain (prev_hash)
-- and its own (hash, over every other column but id). Rows are only ever
-- inserted, and deleted only by a retention prune that exported them first.
CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY,
    writer_id     TEXT    NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq > 0),
    kind          TEXT    NOT NULL CHECK (kind IN ('call', 'checkpoint', 'prune')),
    at            TEXT    NOT NULL,
    caller        TEXT    NOT NULL DEFAULT '',
    method        TEXT    NOT NULL DEFAULT '',
    organisations TEXT    NOT NULL DEFAULT '',
    key_id        TEXT    NOT NULL DEFAULT '',
    backup_id     TEXT    NOT NULL DEFAULT '',
    package_id    TEXT    NOT NULL DEFAULT '',
    code          TEXT    NOT NULL DEFAULT '',
    reason        TEXT    NOT NULL DEFAULT '',
    trace_id      TEXT    NOT NULL DEFAULT '',
    peer          TEXT    NOT NULL DEFAULT '',
    anchors       TEXT    NOT NULL DEFAULT '',
    prev_hash     TEXT    NOT NULL,
    hash          TEXT    NOT NULL,
    UNIQUE (writer_id, seq)
) STRICT;

CREATE INDEX audit_events_at ON audit_events (at, id);
CREATE INDEX audit_events_caller_at ON audit_events (caller, at);
