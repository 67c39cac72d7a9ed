-- A callback ran (or could not): it leaves the queue, and a failure ($2) is written on its
-- event. An event already past its retention ($3 s for delivered, $4 s for dead), which the
-- purge kept only for its callback, goes now, with its attempts: the purge passed it, and
-- comes back to such events only every 10 minutes (src/worker/maintain.rs).
WITH gone AS (
    DELETE FROM webhook._callback_queue WHERE event_id = $1
), past AS (
    SELECT a.id FROM webhook._event_archive a
     WHERE a.id = $1
       AND (a.status = 'delivered' AND a.finished_at < pg_catalog.now() - $3 * interval '1 second'
            OR a.status = 'dead' AND a.finished_at < pg_catalog.now() - $4 * interval '1 second')
), failed AS (
    UPDATE webhook._event_archive SET callback_error = $2
     WHERE id = $1 AND $2::pg_catalog.text IS NOT NULL AND id NOT IN (SELECT id FROM past)
), purged AS (
    DELETE FROM webhook._event_archive a USING past p WHERE a.id = p.id RETURNING a.id
)
DELETE FROM webhook._attempts t USING purged p WHERE t.event_id = p.id
