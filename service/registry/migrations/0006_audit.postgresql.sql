-- The audit trail: see 0006_audit.sqlite.sql.
CREATE TABLE audit_events (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    writer_id     TEXT        NOT NULL,
    seq           BIGINT      NOT NULL CHECK (seq > 0),
    kind          TEXT        NOT NULL CHECK (kind IN ('call', 'checkpoint', 'prune')),
    at            TIMESTAMPTZ NOT NULL,
    caller        TEXT        NOT NULL DEFAULT '',
    method        TEXT        NOT NULL DEFAULT '',
    organisations TEXT        NOT NULL DEFAULT '',
    key_id        TEXT        NOT NULL DEFAULT '',
    backup_id     TEXT        NOT NULL DEFAULT '',
    package_id    TEXT        NOT NULL DEFAULT '',
    code          TEXT        NOT NULL DEFAULT '',
    reason        TEXT        NOT NULL DEFAULT '',
    trace_id      TEXT        NOT NULL DEFAULT '',
    peer          TEXT        NOT NULL DEFAULT '',
    anchors       TEXT        NOT NULL DEFAULT '',
    prev_hash     TEXT        NOT NULL,
    hash          TEXT        NOT NULL,
    UNIQUE (writer_id, seq)
);

CREATE INDEX audit_events_at ON audit_events (at, id);
CREATE INDEX audit_events_caller_at ON audit_events (caller, at);
