-- Webhook signing secrets sealed at rest (issue 18): a sealed value differs at every seal, so
-- it cannot be the key; each row gets an id of its own. Rows copied here in the clear are
-- sealed under the server key at the next start (callbacks/secrets.py), before any use.
CREATE TABLE webhook_secrets_sealed (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    secret      TEXT NOT NULL,          -- sealed (storage/crypto.py), bound to the user's id
    created_at  DOUBLE PRECISION NOT NULL,
    retired_at  DOUBLE PRECISION,       -- NULL: the user's current secret
    expires_at  DOUBLE PRECISION        -- a retired secret is still valid until then
);
INSERT INTO webhook_secrets_sealed
    SELECT replace(gen_random_uuid()::text, '-', ''), user_id, secret, created_at,
           retired_at, expires_at
    FROM webhook_secrets;
DROP TABLE webhook_secrets;
ALTER TABLE webhook_secrets_sealed RENAME TO webhook_secrets;
-- At most one current secret per user (get-or-create races insert once).
CREATE UNIQUE INDEX webhook_secrets_current ON webhook_secrets(user_id) WHERE retired_at IS NULL;
-- A user's secrets, for signing and rotation.
CREATE INDEX webhook_secrets_user ON webhook_secrets(user_id, created_at);
