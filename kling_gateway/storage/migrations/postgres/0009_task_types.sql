-- retrieve_batch filtered by `type` (docs/contract.md §1, §7): with several kinds of task a
-- user's tasks of one kind are a range of this index, newest first, instead of a scan of all
-- of the user's tasks filtered one by one. `type` leads, so that a query without it (a
-- video looked up by its id, say) is never planned on this index instead of its own.
CREATE INDEX tasks_type_user_created ON tasks(type, user_id, created_at DESC);
