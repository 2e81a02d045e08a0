-- write_probe holds one row that readiness rewrites: a registry that cannot
-- write (a full disk, a read-only file system, another process holding the
-- write lock) fails the probe, and health turns NOT_SERVING before any
-- backup could be acknowledged without its record.
CREATE TABLE write_probe (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at TEXT NOT NULL
);
