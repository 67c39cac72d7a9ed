-- Retention: the next $3 finished events older than the shorter horizon, in finished_at order
-- after the cursor ($4: microseconds since 1970 of its finished_at, $5: its id), are looked at,
-- and those past their own horizon ($1 s for delivered, $2 s for dead) deleted, with their
-- attempts. An event whose callback has yet to run stays until it has (the runner reads it
-- from here): purged, its callback was dropped unseen. Those looked at and kept (dead ones not
-- yet past theirs, callbacks pending) are passed by the cursor, so that each run reads only
-- what it has not looked at: read from the first every time, 500,000 dead events made every
-- run walk them all. The worker starts the cursor over now and then (src/worker/maintain.rs).
-- Returns the events looked at, deleted, their attempts deleted, and the cursor's new place.
WITH seen AS (
    SELECT x.id, x.finished_at, x.status
      FROM webhook._event_archive x
     WHERE x.finished_at < pg_catalog.now() - LEAST($1, $2) * interval '1 second'
       AND x.finished_at >= timestamptz 'epoch' + $4 * interval '1 microsecond'
       AND (x.finished_at, x.id) > (timestamptz 'epoch' + $4 * interval '1 microsecond', $5)
     ORDER BY x.finished_at, x.id
     LIMIT $3
), gone AS (
    DELETE FROM webhook._event_archive a
     USING seen s
     WHERE a.id = s.id
       AND (s.status = 'delivered' AND s.finished_at < pg_catalog.now() - $1 * interval '1 second'
            OR s.status = 'dead' AND s.finished_at < pg_catalog.now() - $2 * interval '1 second')
       AND NOT EXISTS (SELECT FROM webhook._callback_queue c WHERE c.event_id = s.id)
    RETURNING a.id
), attempts AS (
    DELETE FROM webhook._attempts t USING gone g WHERE t.event_id = g.id RETURNING 1
), last AS (
    SELECT s.finished_at, s.id FROM seen s ORDER BY s.finished_at DESC, s.id DESC LIMIT 1
)
SELECT (SELECT count(*) FROM seen),
       (SELECT count(*) FROM gone),
       (SELECT count(*) FROM attempts),
       (SELECT (EXTRACT(epoch FROM l.finished_at) * 1000000)::pg_catalog.int8 FROM last l),
       (SELECT l.id FROM last l)
