-- The transactions with events queued for a subscription grouped by transaction ($1) whose
-- lowest part still queued may go now, oldest first, at most $2: among its first 5000 queued
-- events in id order, each transaction with that part (parts go in order; NULL: not cut into
-- parts yet). A transaction whose lowest part waits for a retry (or is parked) is left out
-- here, so failing transactions never take the places of those that may go.
SELECT t.txid::pg_catalog.text::pg_catalog.int8, t.lowest, t.uncut
  FROM (SELECT h.txid, pg_catalog.min(h.part) AS lowest, pg_catalog.bool_or(h.part IS NULL) AS uncut,
               pg_catalog.min(h.id) AS first
          FROM (SELECT c.txid, c.id, c.part FROM webhook._event_queue c
                 WHERE c.ordered AND c.subscription_id = $1
                 ORDER BY c.id LIMIT 5000) h
         GROUP BY h.txid) t
 WHERE NOT EXISTS (SELECT 1 FROM webhook._event_queue w
                    WHERE w.txid = t.txid AND w.subscription_id = $1
                      AND w.part = t.lowest AND w.next_attempt_at > pg_catalog.now())
 ORDER BY t.first
 LIMIT $2
