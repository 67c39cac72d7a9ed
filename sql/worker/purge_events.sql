-- Retention: up to $3 finished events older than their horizon ($1 s for delivered, $2 s for
-- dead), oldest first. The first bound is what lets the index scan stop early: without it the
-- OR made every run walk the whole finished_at index. An event whose callback has yet to run
-- stays until it has (the runner reads it from here): purged, its callback was dropped unseen.
DELETE FROM webhook._event_archive a
 WHERE a.id IN (SELECT x.id FROM webhook._event_archive x
                 WHERE x.finished_at < pg_catalog.now() - LEAST($1, $2) * interval '1 second'
                   AND (x.finished_at < pg_catalog.now() - $1 * interval '1 second'
                            AND x.status = 'delivered'
                        OR x.finished_at < pg_catalog.now() - $2 * interval '1 second')
                   AND NOT EXISTS (SELECT FROM webhook._callback_queue c WHERE c.event_id = x.id)
                 ORDER BY x.finished_at LIMIT $3)
