-- The validated request of a task (JSON of ``domain.params.VideoParams``, defaults applied),
-- beside ``request`` as sent. Rows from before stay NULL: a task without params is validated
-- once from its stored request when it is loaded (``domain.videos.params_from_stored``).
ALTER TABLE tasks ADD COLUMN params JSON;
