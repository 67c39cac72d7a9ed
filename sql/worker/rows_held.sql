-- The subscriptions some of whose finished events ($1 txids, $2 ids) have a queue row that
-- another transaction holds right now: an unsubscribe discarding the queue, left open.
-- Recording their outcomes would wait for it (and fail at lock_timeout), so the worker sets
-- them aside and records the others (src/worker/record.rs). Waits for no row: rows it cannot lock at once are the ones held.
-- The locks it takes last until its transaction ends, right after.
WITH mine AS MATERIALIZED (
    SELECT q.id
      FROM webhook._event_queue q
      JOIN ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),
                     pg_catalog.unnest($2::pg_catalog.int8[])) AS u (txid, id)
        ON q.txid OPERATOR(pg_catalog.=) u.txid::pg_catalog.text::pg_catalog.xid8
       AND q.id OPERATOR(pg_catalog.=) u.id
       FOR UPDATE OF q SKIP LOCKED
)
SELECT DISTINCT q.subscription_id
  FROM webhook._event_queue q
  JOIN ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),
                 pg_catalog.unnest($2::pg_catalog.int8[])) AS u (txid, id)
    ON q.txid OPERATOR(pg_catalog.=) u.txid::pg_catalog.text::pg_catalog.xid8
   AND q.id OPERATOR(pg_catalog.=) u.id
 WHERE NOT EXISTS (SELECT FROM mine m WHERE m.id OPERATOR(pg_catalog.=) q.id)
