-- The reconciler re-sends the assignment of every pair whose outcome is
-- unknown until the upstream settles it (200: recorded, 409: orphaned).
-- resolve_attempts counts its claims of the pair: a pending row with
-- resolve_attempts > 0 is the reconciler's claim, not a caller's request.
-- resolve_after is when a pair that stayed unknown may be claimed again
-- (NULL: at once), the backoff between attempts.
ALTER TABLE keys ADD COLUMN resolve_attempts INTEGER NOT NULL DEFAULT 0 CHECK (resolve_attempts >= 0);
ALTER TABLE keys ADD COLUMN resolve_after TEXT;

CREATE INDEX keys_to_resolve ON keys (resolve_after, id) WHERE state IN ('unknown', 'pending');
