-- When a token was last used (`kling-gateway tokens list`): written at most once a minute per
-- token and API process, off the request's path (api/auth.py), so the hot path adds no write.
ALTER TABLE credentials ADD COLUMN last_used_at DOUBLE PRECISION;
