-- Per-user signing secrets of callbacks (Standard Webhooks ``whsec_...``). A rotation retires
-- the current secret but keeps it valid until expires_at, so both signatures are sent meanwhile.
CREATE TABLE webhook_secrets (
    secret      TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    created_at  REAL NOT NULL,
    retired_at  REAL,                   -- NULL: the user's current secret
    expires_at  REAL                    -- a retired secret is still valid until then
);
-- At most one current secret per user (get-or-create races insert once).
CREATE UNIQUE INDEX webhook_secrets_current ON webhook_secrets(user_id) WHERE retired_at IS NULL;
-- A user's secrets, for signing and rotation.
CREATE INDEX webhook_secrets_user ON webhook_secrets(user_id, created_at);
