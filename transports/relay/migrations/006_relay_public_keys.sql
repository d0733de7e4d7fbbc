-- The queue's private signing keys stay in the queue process: every service shares this database,
-- and a private key here let any of them mint the queue's OIDC pushes (identity issue, item 6).
ALTER TABLE relay_signing_keys DROP COLUMN IF EXISTS private_pem;
