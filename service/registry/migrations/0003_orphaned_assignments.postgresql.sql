-- An assignment whose answer was lost and whose retry met the upstream's
-- 409 is 'orphaned': the upstream holds the key our own lost attempt made.
-- It is an operator case like 'elsewhere', but with another cause, so it
-- gets its own state. keys_state_check is the name PostgreSQL gave the
-- column's CHECK in 0001.
ALTER TABLE keys DROP CONSTRAINT keys_state_check;
ALTER TABLE keys ADD CONSTRAINT keys_state_check
    CHECK (state IN ('pending', 'assigned', 'unknown', 'untrusted', 'elsewhere', 'orphaned'));
