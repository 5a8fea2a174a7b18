-- retrieve_batch filtered by `type` (docs/contract.md §1, §7): with several kinds of task a
-- user's tasks of one kind are a range of this index, newest first, instead of a scan of all
-- of the user's tasks filtered one by one.
CREATE INDEX tasks_user_type_created ON tasks(user_id, type, created_at DESC);
