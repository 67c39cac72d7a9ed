-- Retention: up to $3 logged attempts older than the shorter horizon whose event is gone.
DELETE FROM webhook._attempts t
 WHERE (t.event_id, t.attempt) IN (
           SELECT x.event_id, x.attempt FROM webhook._attempts x
            WHERE x.started_at < pg_catalog.now() - LEAST($1, $2) * interval '1 second'
              AND NOT EXISTS (SELECT 1 FROM webhook._event_queue q WHERE q.id = x.event_id)
              AND NOT EXISTS (SELECT 1 FROM webhook._event_archive a WHERE a.id = x.event_id)
            ORDER BY x.started_at LIMIT $3)
