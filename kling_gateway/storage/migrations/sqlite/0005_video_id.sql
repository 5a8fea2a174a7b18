-- find_user_video (every extend) looks a video up by its id among a user's succeeded tasks.
-- A generated column is set exactly when a task succeeds, by every writer, and the index
-- build fills it for the tasks already stored. VIRTUAL: ALTER TABLE cannot add a STORED one;
-- the index keeps the value, so a lookup never re-parses the response.
ALTER TABLE tasks ADD COLUMN video_id TEXT GENERATED ALWAYS AS (
    CASE WHEN state = 'succeed' THEN json_extract(response, '$.video_id') END
) VIRTUAL;
CREATE INDEX tasks_user_video ON tasks(user_id, video_id) WHERE video_id IS NOT NULL;
