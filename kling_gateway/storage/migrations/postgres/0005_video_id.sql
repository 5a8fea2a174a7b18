-- find_user_video (every extend) looks a video up by its id among a user's succeeded tasks.
-- A generated column is set exactly when a task succeeds, by every writer; adding it computes
-- it for the tasks already stored (the table is rewritten once, under this migration's lock).
ALTER TABLE tasks ADD COLUMN video_id TEXT GENERATED ALWAYS AS (
    CASE WHEN state = 'succeed' THEN response ->> 'video_id' END
) STORED;
CREATE INDEX tasks_user_video ON tasks(user_id, video_id) WHERE video_id IS NOT NULL;
