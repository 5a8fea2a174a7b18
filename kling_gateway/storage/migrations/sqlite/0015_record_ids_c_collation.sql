-- PostgreSQL's 0015 gives record ids the "C" collation; SQLite compares TEXT bytewise (BINARY)
-- already, so there is nothing to do here. The file keeps both backends' numbering aligned.
SELECT 1;
