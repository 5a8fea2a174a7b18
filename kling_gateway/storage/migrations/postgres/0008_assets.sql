-- Element and voice ids per user (docs/contract.md §6): upstream ids belong to a Kling account,
-- not to a user, so a user names them by a gateway id that only their requests can use.
CREATE TABLE assets (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    kind TEXT NOT NULL CHECK (kind IN ('element', 'voice')),
    upstream_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX assets_user_kind ON assets(user_id, kind);
