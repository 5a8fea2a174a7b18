-- The rendered record moves to a table of its own (as on PostgreSQL, where that keeps it
-- uncompressed): one layout, one engine. Written only by the engine's _store_record.
CREATE TABLE task_records (
    id       TEXT PRIMARY KEY,           -- the task's id
    user_id  TEXT NOT NULL,              -- checked on every read: a foreign task looks missing
    record   BLOB NOT NULL               -- the rendered record, returned as stored bytes
);
INSERT INTO task_records (id, user_id, record) SELECT id, user_id, record FROM tasks;
ALTER TABLE tasks DROP COLUMN record;
