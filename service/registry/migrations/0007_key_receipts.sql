-- Each key keeps the enclave's signature as it was verified (the receipt),
-- so that recoveryd re-verifies the row before encrypting to it, and a
-- caller can verify the key itself: a public key swapped in the database
-- no longer verifies. Rows recorded before this migration have none
-- (NULL), and recoveryd refuses to use them (KEY_RECEIPT_INVALID) until an
-- operator re-imports them.
ALTER TABLE keys ADD COLUMN signature TEXT;
ALTER TABLE keys ADD COLUMN signed_payload TEXT;
ALTER TABLE keys ADD COLUMN signing_key_id TEXT;
