-- The rendered record moves to a narrow table of its own. In ``tasks`` it sat beside
-- request/response (rows of ~2.5 KB), so PostgreSQL compressed or TOASTed it and every
-- retrieve paid for decompression. Here a row is the record alone: kept inline up to
-- toast_tuple_target and never compressed (EXTERNAL), so a retrieve copies stored bytes.
CREATE TABLE task_records (
    id       TEXT PRIMARY KEY,           -- the task's id
    user_id  TEXT NOT NULL,              -- checked on every read: a foreign task looks missing
    record   BYTEA NOT NULL              -- the rendered record; asyncpg returns bytes as is
);
ALTER TABLE task_records ALTER COLUMN record SET STORAGE EXTERNAL;
ALTER TABLE task_records SET (toast_tuple_target = 8160);
INSERT INTO task_records (id, user_id, record) SELECT id, user_id, record FROM tasks;
ALTER TABLE tasks DROP COLUMN record;
