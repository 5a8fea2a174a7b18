-- Record ids compare bytewise. With the database's default collation (C.UTF-8 and the like
-- are not "C" to PostgreSQL 15) every B-tree probe of a retrieve goes through strcoll; ids are
-- ASCII UUIDs, so "C" orders them the same and a 100-id retrieve_batch costs ~10 % less CPU
-- (bench/pg_records.py). Only the primary-key index is rebuilt; the rows stay as they are.
ALTER TABLE task_records ALTER COLUMN id TYPE TEXT COLLATE "C";
