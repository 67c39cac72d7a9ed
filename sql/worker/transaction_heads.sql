-- The transactions with events queued for a subscription grouped by transaction ($1), oldest
-- first, at most $2: among its first 5000 queued events in id order, each transaction with the
-- lowest part still queued (parts go in order; NULL: not cut into parts yet).
SELECT h.txid::pg_catalog.text::pg_catalog.int8, pg_catalog.min(h.part),
       pg_catalog.bool_or(h.part IS NULL)
  FROM (SELECT c.txid, c.id, c.part FROM webhook._event_queue c
         WHERE c.ordered AND c.subscription_id = $1
         ORDER BY c.id LIMIT 5000) h
 GROUP BY h.txid
 ORDER BY pg_catalog.min(h.id)
 LIMIT $2
