-- Retention of attempts whose event is gone by other means than the purge (which deletes an
-- event's attempts with it): the next $3 attempts older than the shorter horizon ($1, $2 s),
-- in started_at order after the cursor ($4: microseconds since 1970 of its started_at, $5, $6:
-- its event and attempt), are looked at, and those whose event is in neither the queue nor the
-- archive deleted. The cursor passes those kept (a dead event's, kept for dead_retention), as
-- in purge_events.sql: read from the first every run, 3,000,000 such attempts took 5 s a run.
-- Returns the attempts looked at, deleted, and the cursor's new place.
WITH seen AS (
    SELECT x.event_id, x.attempt, x.started_at
      FROM webhook._attempts x
     WHERE x.started_at < pg_catalog.now() - LEAST($1, $2) * interval '1 second'
       AND x.started_at >= timestamptz 'epoch' + $4 * interval '1 microsecond'
       AND (x.started_at, x.event_id, x.attempt)
           > (timestamptz 'epoch' + $4 * interval '1 microsecond', $5, $6)
     ORDER BY x.started_at, x.event_id, x.attempt
     LIMIT $3
), gone AS (
    DELETE FROM webhook._attempts t
     USING seen s
     WHERE t.event_id = s.event_id AND t.attempt = s.attempt
       AND NOT EXISTS (SELECT FROM webhook._event_queue q WHERE q.id = s.event_id)
       AND NOT EXISTS (SELECT FROM webhook._event_archive a WHERE a.id = s.event_id)
    RETURNING 1
), last AS (
    SELECT s.started_at, s.event_id, s.attempt FROM seen s
     ORDER BY s.started_at DESC, s.event_id DESC, s.attempt DESC LIMIT 1
)
SELECT (SELECT count(*) FROM seen),
       (SELECT count(*) FROM gone),
       (SELECT (EXTRACT(epoch FROM l.started_at) * 1000000)::pg_catalog.int8 FROM last l),
       (SELECT l.event_id FROM last l),
       (SELECT l.attempt FROM last l)
