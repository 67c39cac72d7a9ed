-- A callback ran (or could not): it leaves the queue, and a failure ($2) is written on its
-- event.
WITH gone AS (
    DELETE FROM webhook._callback_queue WHERE event_id = $1
)
UPDATE webhook._event_archive SET callback_error = $2
 WHERE id = $1 AND $2::pg_catalog.text IS NOT NULL
