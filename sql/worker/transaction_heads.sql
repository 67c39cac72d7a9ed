-- The transactions with events queued for a subscription grouped by transaction ($1) whose
-- lowest part still queued may go now, oldest first, at most $2: among its first 5000 queued
-- events in id order, each transaction with that part (parts go in order; NULL: not cut into
-- parts yet). A transaction whose lowest part waits for a retry (or is parked) is left out
-- here, so failing transactions never take the places of those that may go; decided from the
-- window's own rows (its events share their attempts), not by reading the queue again.
SELECT w.txid::pg_catalog.text::pg_catalog.int8, w.lowest, pg_catalog.bool_or(w.part IS NULL)
  FROM (SELECT h.txid, h.id, h.part, h.next_attempt_at,
               pg_catalog.min(h.part) OVER (PARTITION BY h.txid) AS lowest
          FROM (SELECT c.txid, c.id, c.part, c.next_attempt_at FROM webhook._event_queue c
                 WHERE c.ordered AND c.subscription_id = $1
                 ORDER BY c.id LIMIT 5000) h) w
 GROUP BY w.txid, w.lowest
HAVING NOT COALESCE(pg_catalog.bool_or(w.part IS NOT DISTINCT FROM w.lowest
                                       AND w.next_attempt_at > pg_catalog.now()), false)
 ORDER BY pg_catalog.min(w.id)
 LIMIT $2
