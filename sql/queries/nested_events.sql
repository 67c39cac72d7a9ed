-- The events of subscription $2 this transaction ($1) queued with ids in the ranges $3[i] to
-- $4[i], in id order: statements nested in another's AFTER triggers took those ids before the
-- outer statement took its own, and capture moves them after it (src/capture/nested.rs).
SELECT q.id
  FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.int8[]), pg_catalog.unnest($4::pg_catalog.int8[]))
       AS r (first, last)
  JOIN webhook._event_queue AS q
    ON q.txid OPERATOR(pg_catalog.=) $1
   AND q.id OPERATOR(pg_catalog.>=) r.first
   AND q.id OPERATOR(pg_catalog.<=) r.last
 WHERE q.subscription_id OPERATOR(pg_catalog.=) $2
 ORDER BY q.id
